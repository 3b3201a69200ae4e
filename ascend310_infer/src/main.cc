// Inference with the MindSpore C++ API for every model of the zoo: per utterance, the .bin files that
// inputs.txt lists go in as the model's inputs, and every output of the model comes out as a .bin file.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "args.h"
#include "input_list.h"
#include "model_runner.h"
#include "status.h"
#include "tensor_io.h"
#include "tensor_spec.h"

namespace zoo {
namespace {

using Clock = std::chrono::steady_clock;

double MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string JoinNames(const std::vector<std::string> &names) {
  std::string out;
  for (const auto &name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// The list must describe the model's inputs: as many, in its order.
Status CheckHeader(const InputList &list, const ModelRunner &runner, const std::string &model_path) {
  if (list.input_names.size() != runner.input_count()) {
    return Status::Error(list.header_where + ": the header lists " + std::to_string(list.input_names.size()) + " inputs (" +
                         JoinNames(list.input_names) + "), but the model " + model_path + " takes " +
                         std::to_string(runner.input_count()) + " (" + JoinNames(runner.input_names()) +
                         "): preprocess for this model (preprocess.py --mindir)");
  }
  if (list.input_names != runner.input_names()) {  // informative only: the order is what counts
    std::printf("note: %s names the inputs (%s); the model calls them (%s)\n", list.path.c_str(),
                JoinNames(list.input_names).c_str(), JoinNames(runner.input_names()).c_str());
  }
  return Status();
}

// Reads the utterance's input files into `buffers`, after checking their types and shaping the model.
Status LoadInputs(const std::filesystem::path &input_dir, const Utterance &utt, ModelRunner *runner,
                  std::vector<std::vector<uint8_t>> *buffers) {
  std::vector<std::vector<int64_t>> shapes;
  for (size_t i = 0; i < utt.inputs.size(); ++i) {
    const TensorSpec &spec = utt.inputs[i].spec;
    if (spec.type != runner->input_type(i)) {
      return Status::Error(utt.where + ": input '" + runner->input_names()[i] + "' (" + utt.inputs[i].path +
                           ") is listed as " + ElementTypeName(spec.type) + ", but the model takes " +
                           ElementTypeName(runner->input_type(i)));
    }
    shapes.push_back(spec.shape);
  }
  const Status prepared = runner->PrepareFor(shapes);
  if (!prepared.ok()) return Status::Error(utt.where + ": utterance " + utt.id + ": " + prepared.message());
  buffers->resize(utt.inputs.size());
  for (size_t i = 0; i < utt.inputs.size(); ++i) {
    const InputFile &input = utt.inputs[i];
    RETURN_IF_ERROR(ReadTensorFile((input_dir / input.path).string(), ByteSize(input.spec),
                                   Describe(input.spec) + ", as listed at " + utt.where, &(*buffers)[i]));
  }
  return Status();
}

Status WriteOutput(const std::string &path, const mindspore::MSTensor &tensor) {
  const std::shared_ptr<const void> data = tensor.Data();
  if (!data) return Status::Error("the model returned an output without data for " + path);
  return WriteFileAtomically(path, data.get(), tensor.DataSize());
}

std::string ShapesCell(const Utterance &utt) {
  std::string out;
  for (const auto &input : utt.inputs) out += (out.empty() ? "" : ",") + ShapeListString(input.spec.shape);
  return out;
}

Status Run(const Options &options) {
  namespace fs = std::filesystem;
  const fs::path input_dir(options.input_dir), result_dir(options.result_dir);
  InputList list;
  RETURN_IF_ERROR(ReadInputList((input_dir / "inputs.txt").string(), &list));
  std::error_code ec;
  fs::create_directories(result_dir, ec);
  if (ec) return Status::Error("cannot create " + result_dir.string() + ": " + ec.message());

  const auto build_start = Clock::now();
  std::unique_ptr<ModelRunner> runner;
  RETURN_IF_ERROR(ModelRunner::Create(options, &runner));
  std::printf("model %s built in %.2f s (%s route); inputs: %s\n", options.mindir_path.c_str(),
              MillisecondsSince(build_start) / 1000.0, runner->build_route().c_str(),
              JoinNames(runner->input_names()).c_str());
  RETURN_IF_ERROR(CheckHeader(list, *runner, options.mindir_path));

  std::ostringstream timing;
  timing << "utt_id\tinput_shapes\tpredict_ms\n";
  double total_ms = 0.0;
  const auto run_start = Clock::now();
  const size_t count = list.utterances.size();
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<mindspore::MSTensor> outputs;
  for (size_t i = 0; i < count; ++i) {
    const Utterance &utt = list.utterances[i];
    RETURN_IF_ERROR(LoadInputs(input_dir, utt, runner.get(), &buffers));

    const auto start = Clock::now();
    const Status predicted = runner->Predict(buffers, &outputs);
    if (!predicted.ok()) return Status::Error(utt.where + ": utterance " + utt.id + ": " + predicted.message());
    const double ms = MillisecondsSince(start);
    total_ms += ms;

    for (size_t k = 0; k < outputs.size(); ++k) {
      RETURN_IF_ERROR(WriteOutput((result_dir / (utt.id + "_" + std::to_string(k) + ".bin")).string(), outputs[k]));
    }
    const std::string shapes = ShapesCell(utt);
    timing << utt.id << '\t' << shapes << '\t' << ms << '\n';
    std::printf("[%zu/%zu] %s: %s, %.2f ms\n", i + 1, count, utt.id.c_str(), shapes.c_str(), ms);
    std::fflush(stdout);  // progress shows up in piped logs as it happens
  }
  const std::string timing_text = timing.str();
  RETURN_IF_ERROR(WriteFileAtomically((result_dir / "timing.tsv").string(), timing_text.data(), timing_text.size()));
  std::printf("inference: %zu utterances, %.3f s in Predict (%.2f ms per utterance), %.3f s in total\n", count,
              total_ms / 1000.0, total_ms / count, MillisecondsSince(run_start) / 1000.0);
  return Status();
}

}  // namespace
}  // namespace zoo

int main(int argc, char **argv) {
  zoo::Options options;
  const zoo::Status parsed = zoo::ParseArgs(argc, argv, &options);
  if (options.help) {
    std::printf("%s", zoo::Usage(argv[0]).c_str());
    return 0;
  }
  if (!parsed.ok()) {
    std::fprintf(stderr, "error: %s\n%s", parsed.message().c_str(), zoo::Usage(argv[0]).c_str());
    return 2;
  }
  const zoo::Status status = zoo::Run(options);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", status.message().c_str());
    return 1;
  }
  return 0;
}
