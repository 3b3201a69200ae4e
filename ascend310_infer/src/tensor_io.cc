// .bin tensor files: little-endian raw arrays without a header, as numpy's tofile() writes them.
#include "tensor_io.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

namespace zoo {
namespace {

struct FileCloser {
  void operator()(std::FILE *f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// A temporary file beside the target, deleted unless Commit() renamed it into place.
class TempFile {
 public:
  explicit TempFile(const std::string &target)
      : target_(target), path_(target + "." + std::to_string(getpid()) + ".tmp") {}
  TempFile(const TempFile &) = delete;
  TempFile &operator=(const TempFile &) = delete;
  ~TempFile() {
    if (!committed_) std::remove(path_.c_str());
  }

  const std::string &path() const { return path_; }

  Status Commit() {
    if (std::rename(path_.c_str(), target_.c_str()) != 0) {
      return Status::Error("cannot rename " + path_ + " to " + target_ + ": " + std::strerror(errno));
    }
    committed_ = true;
    return Status();
  }

 private:
  std::string target_, path_;
  bool committed_ = false;
};

}  // namespace

Status ReadTensorFile(const std::string &path, size_t expected_bytes, const std::string &description,
                      std::vector<uint8_t> *data) {
  std::error_code ec;
  const auto actual = std::filesystem::file_size(path, ec);
  if (ec) {
    return Status::Error("cannot read " + path + " (" + description + "): " + ec.message() +
                         " (run preprocess.py first?)");
  }
  if (actual != expected_bytes) {
    return Status::Error(path + " holds " + std::to_string(actual) + " bytes; expected " +
                         std::to_string(expected_bytes) + " bytes (" + description + ")");
  }
  File file(std::fopen(path.c_str(), "rb"));
  if (!file) return Status::Error("cannot open " + path + ": " + std::strerror(errno));
  data->resize(expected_bytes);
  if (expected_bytes > 0 && std::fread(data->data(), 1, expected_bytes, file.get()) != expected_bytes) {
    return Status::Error("short read from " + path);
  }
  return Status();
}

Status WriteFileAtomically(const std::string &path, const void *data, size_t size) {
  TempFile tmp(path);
  {
    File file(std::fopen(tmp.path().c_str(), "wb"));
    if (!file) return Status::Error("cannot create " + tmp.path() + ": " + std::strerror(errno));
    if (size > 0 && std::fwrite(data, 1, size, file.get()) != size) {
      return Status::Error("cannot write " + tmp.path() + ": " + std::strerror(errno));
    }
    if (std::fflush(file.get()) != 0) return Status::Error("cannot write " + tmp.path() + ": " + std::strerror(errno));
  }
  return tmp.Commit();
}

}  // namespace zoo
