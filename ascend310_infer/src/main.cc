// Jasper inference with the MindSpore C++ API: preprocess.py's .bin files in, model outputs out.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "args.h"
#include "model_runner.h"
#include "status.h"
#include "tensor_io.h"
#include "utterance_list.h"

namespace jasper {
namespace {

using Clock = std::chrono::steady_clock;

double MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

Status CheckLength(const std::string &path, const std::vector<uint8_t> &bytes, int64_t frames) {
  int32_t length = 0;
  std::memcpy(&length, bytes.data(), sizeof(length));
  if (length < 1 || length > frames) {
    return Status::Error(path + " holds " + std::to_string(length) + " valid frames, outside 1.." +
                         std::to_string(frames) + " of its features");
  }
  return Status();
}

Status WriteOutput(const std::string &path, const mindspore::MSTensor &tensor) {
  const std::shared_ptr<const void> data = tensor.Data();
  if (!data) return Status::Error("the model returned an output without data for " + path);
  return WriteFileAtomically(path, data.get(), tensor.DataSize());
}

Status Run(const Options &options) {
  namespace fs = std::filesystem;
  const fs::path input_dir(options.input_dir), result_dir(options.result_dir);
  std::vector<Utterance> utterances;
  RETURN_IF_ERROR(ReadUtteranceList((input_dir / "utterances.txt").string(), &utterances));
  std::error_code ec;
  fs::create_directories(result_dir, ec);
  if (ec) return Status::Error("cannot create " + result_dir.string() + ": " + ec.message());

  const auto build_start = Clock::now();
  std::unique_ptr<ModelRunner> runner;
  RETURN_IF_ERROR(ModelRunner::Create(options, &runner));
  std::printf("model %s built in %.2f s (%s route)\n", options.mindir_path.c_str(),
              MillisecondsSince(build_start) / 1000.0, runner->build_route().c_str());

  std::ostringstream timing;
  timing << "utt_id\tframes\tpredict_ms\n";
  double total_ms = 0.0;
  const auto run_start = Clock::now();
  std::vector<uint8_t> features, lengths;
  std::vector<mindspore::MSTensor> outputs;
  for (size_t i = 0; i < utterances.size(); ++i) {
    const Utterance &utt = utterances[i];
    const std::string feature_path = (input_dir / "features" / (utt.id + ".bin")).string();
    const std::string length_path = (input_dir / "lengths" / (utt.id + ".bin")).string();
    RETURN_IF_ERROR(runner->PrepareFor(utt.frames));
    RETURN_IF_ERROR(ReadTensorFile(feature_path, runner->FeatureBytes(), runner->FeatureDescription(), &features));
    RETURN_IF_ERROR(ReadTensorFile(length_path, runner->LengthBytes(), runner->LengthDescription(), &lengths));
    RETURN_IF_ERROR(CheckLength(length_path, lengths, utt.frames));

    const auto start = Clock::now();
    RETURN_IF_ERROR(runner->Predict(features, lengths, &outputs));
    const double ms = MillisecondsSince(start);
    total_ms += ms;

    RETURN_IF_ERROR(WriteOutput((result_dir / (utt.id + "_0.bin")).string(), outputs[0]));
    RETURN_IF_ERROR(WriteOutput((result_dir / (utt.id + "_1.bin")).string(), outputs[1]));
    timing << utt.id << '\t' << utt.frames << '\t' << ms << '\n';
    std::printf("[%zu/%zu] %s: %lld frames, %.2f ms\n", i + 1, utterances.size(), utt.id.c_str(),
                static_cast<long long>(utt.frames), ms);  // NOLINT(runtime/int): printf's %lld
    std::fflush(stdout);  // progress shows up in piped logs as it happens
  }
  const std::string timing_text = timing.str();
  RETURN_IF_ERROR(WriteFileAtomically((result_dir / "timing.tsv").string(), timing_text.data(), timing_text.size()));
  std::printf("inference: %zu utterances, %.3f s in Predict (%.2f ms per utterance), %.3f s in total\n",
              utterances.size(), total_ms / 1000.0, total_ms / utterances.size(),
              MillisecondsSince(run_start) / 1000.0);
  return Status();
}

}  // namespace
}  // namespace jasper

int main(int argc, char **argv) {
  jasper::Options options;
  const jasper::Status parsed = jasper::ParseArgs(argc, argv, &options);
  if (options.help) {
    std::printf("%s", jasper::Usage(argv[0]).c_str());
    return 0;
  }
  if (!parsed.ok()) {
    std::fprintf(stderr, "error: %s\n%s", parsed.message().c_str(), jasper::Usage(argv[0]).c_str());
    return 2;
  }
  const jasper::Status status = jasper::Run(options);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", status.message().c_str());
    return 1;
  }
  return 0;
}
