// Converts an ONNX model into a MindIR that the MindSpore Lite 2.0 runtime loads (CPU tests only).
//
// Usage: convert_to_lite MODEL.onnx OUTPUT_STEM [mindir|ms]
//   writes OUTPUT_STEM.mindir (default, MindIR version 1) or OUTPUT_STEM.ms (Lite flat buffer).
//
// MindSpore 2.x writes MindIR version 3, which Lite 2.0 cannot read, so the CPU route goes through ONNX.
// The Lite wheel ships the converter library but not its header; the few members used here are
// declared by hand and must match the exported symbols of libmindspore_converter.so.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "include/api/status.h"
#include "include/api/types.h"
#include "include/registry/converter_context.h"

namespace mindspore {
class Converter {
 public:
  Converter();
  void SetSaveType(ModelType save_type);
  void SetNoFusion(bool no_fusion);
  Status Convert(converter::FmkType fmk_type, const std::vector<char> &model_file,
                 const std::vector<char> &output_file, const std::vector<char> &weight_file);

 private:
  // The library's object holds one shared_ptr (16 bytes); reserve far more in case of hidden members.
  alignas(16) unsigned char storage_[1024];
};
}  // namespace mindspore

namespace {
std::vector<char> Chars(const std::string &s) { return std::vector<char>(s.begin(), s.end()); }
}  // namespace

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: %s MODEL.onnx OUTPUT_STEM [mindir|ms]\n", argv[0]);
    return 2;
  }
  const std::string model = argv[1], stem = argv[2], kind = argc == 4 ? argv[3] : "mindir";
  if (kind != "mindir" && kind != "ms") {
    std::fprintf(stderr, "error: output kind must be 'mindir' or 'ms', got '%s'\n", kind.c_str());
    return 2;
  }
  if (std::FILE *f = std::fopen(model.c_str(), "rb")) {
    std::fclose(f);
  } else {
    std::fprintf(stderr, "error: cannot open model file %s: %s\n", model.c_str(), std::strerror(errno));
    return 1;
  }
  // Heap-allocated and never destroyed: the real destructor is inline in the missing header, so this
  // declaration cannot release the library's state properly; the process ends right after anyway.
  auto *converter = new (std::nothrow) mindspore::Converter();
  if (converter == nullptr) return 1;
  converter->SetSaveType(kind == "ms" ? mindspore::kMindIR_Lite : mindspore::kMindIR);
  converter->SetNoFusion(false);
  mindspore::Status status =
      converter->Convert(mindspore::converter::kFmkTypeOnnx, Chars(model), Chars(stem), Chars(""));
  if (status != mindspore::kSuccess) {
    std::fprintf(stderr, "error: converting %s failed: %s\n", model.c_str(), status.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s.%s\n", stem.c_str(), kind.c_str());
  return 0;
}
