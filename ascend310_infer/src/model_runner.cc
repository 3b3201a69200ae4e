// Loading, resizing and running the model through the MindSpore C++ inference API (include/api/).
// The same code runs on Ascend (MindSpore with the Ascend backend) and on CPU (MindSpore Lite).
#include "model_runner.h"

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <utility>

#include "include/api/context.h"
#include "include/api/serialization.h"

namespace jasper {
namespace {

Status Check(const mindspore::Status &status, const std::string &what) {
  if (status == mindspore::kSuccess) return Status();
  return Status::Error(what + " failed: " + status.ToString());
}

std::string ShapeString(const std::vector<int64_t> &shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

size_t ElementCount(const std::vector<int64_t> &shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

std::shared_ptr<mindspore::Context> MakeContext(const Options &options) {
  auto context = std::make_shared<mindspore::Context>();
  if (options.device == Device::kCpu) {
    context->MutableDeviceInfo().push_back(std::make_shared<mindspore::CPUDeviceInfo>());
  } else {
    auto ascend = std::make_shared<mindspore::Ascend310DeviceInfo>();
    ascend->SetDeviceID(options.device_id);
    context->MutableDeviceInfo().push_back(ascend);
  }
  return context;
}

// Tensors made by MSTensor::CreateTensor must be released with DestroyTensorPtr.
struct TensorDeleter {
  void operator()(mindspore::MSTensor *tensor) const { mindspore::MSTensor::DestroyTensorPtr(tensor); }
};
using OwnedTensor = std::unique_ptr<mindspore::MSTensor, TensorDeleter>;

}  // namespace

Status ModelRunner::Create(const Options &options, std::unique_ptr<ModelRunner> *runner) {
  std::unique_ptr<ModelRunner> made(new ModelRunner());
  RETURN_IF_ERROR(made->Build(options));
  RETURN_IF_ERROR(made->CheckInputs());
  *runner = std::move(made);
  return Status();
}

Status ModelRunner::Build(const Options &options) {
  const std::string &path = options.mindir_path;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::Error("model file not found: " + path + " (export it with export.py)");
  }
  const auto context = MakeContext(options);
  // The model-zoo route: load the graph, build a GraphCell.  MindSpore Lite 2.0 (the CPU runtime used
  // without an Ascend) refuses it ("Fail to support") but builds from the file itself; so does any
  // other runtime that refuses the GraphCell.
  mindspore::Graph graph;
  mindspore::Status status = mindspore::Serialization::Load(path, mindspore::kMindIR, &graph);
  if (status == mindspore::kSuccess) {
    status = model_.Build(mindspore::GraphCell(graph), context);
    build_route_ = "GraphCell";
  }
  if (status != mindspore::kSuccess) {
    std::fprintf(stderr, "note: the GraphCell route failed (%s); building from the model file\n",
                 status.ToString().c_str());
    status = model_.Build(path, mindspore::kMindIR, context);
    build_route_ = "model file";
  }
  return Check(status, "building the model " + path);
}

Status ModelRunner::CheckInputs() {
  const std::vector<mindspore::MSTensor> inputs = model_.GetInputs();
  if (inputs.size() != 2) {
    return Status::Error("the model has " + std::to_string(inputs.size()) +
                         " inputs; expected 2 (features [B, n_mels, T] float32, lengths [B] int32)");
  }
  const auto &features = inputs[0], &lengths = inputs[1];
  if (features.DataType() != mindspore::DataType::kNumberTypeFloat32 || features.Shape().size() != 3) {
    return Status::Error("the model's first input " + ShapeString(features.Shape()) +
                         " is not float32 features [B, n_mels, T]");
  }
  if (lengths.DataType() != mindspore::DataType::kNumberTypeInt32 || lengths.Shape().size() != 1) {
    return Status::Error("the model's second input " + ShapeString(lengths.Shape()) + " is not int32 lengths [B]");
  }
  if (features.Shape()[1] <= 0) return Status::Error("the model's feature input has no fixed n_mels dimension");
  built_feature_shape_ = features.Shape();
  input_shapes_ = {features.Shape(), lengths.Shape()};
  input_names_ = {features.Name(), lengths.Name()};
  return Status();
}

Status ModelRunner::PrepareFor(int64_t frames) {
  const std::vector<std::vector<int64_t>> wanted = {{1, built_feature_shape_[1], frames}, {1}};
  if (wanted == input_shapes_) return Status();
  const mindspore::Status status = model_.Resize(model_.GetInputs(), wanted);
  if (status != mindspore::kSuccess) {
    // A graph exported with a fixed shape cannot change it: say which inputs it does take.
    std::string hint;
    if (built_feature_shape_[0] > 1) hint += "; export the model with --batch_size 1";
    if (built_feature_shape_[2] > 0) hint += "; preprocess with --n_frames " + std::to_string(built_feature_shape_[2]);
    return Status::Error("the model takes features " + ShapeString(built_feature_shape_) +
                         " and cannot be resized to " + ShapeString(wanted[0]) + " (" + status.ToString() + ")" +
                         hint);
  }
  input_shapes_ = wanted;
  return Status();
}

size_t ModelRunner::FeatureBytes() const { return ElementCount(input_shapes_[0]) * sizeof(float); }
size_t ModelRunner::LengthBytes() const { return ElementCount(input_shapes_[1]) * sizeof(int32_t); }
std::string ModelRunner::FeatureDescription() const { return "float32 " + ShapeString(input_shapes_[0]); }
std::string ModelRunner::LengthDescription() const { return "int32 " + ShapeString(input_shapes_[1]); }

Status ModelRunner::Predict(const std::vector<uint8_t> &features, const std::vector<uint8_t> &lengths,
                            std::vector<mindspore::MSTensor> *outputs) {
  OwnedTensor feature_tensor(mindspore::MSTensor::CreateTensor(
      input_names_[0], mindspore::DataType::kNumberTypeFloat32, input_shapes_[0], features.data(), features.size()));
  OwnedTensor length_tensor(mindspore::MSTensor::CreateTensor(
      input_names_[1], mindspore::DataType::kNumberTypeInt32, input_shapes_[1], lengths.data(), lengths.size()));
  if (!feature_tensor || !length_tensor) return Status::Error("cannot allocate the input tensors");
  outputs->clear();
  RETURN_IF_ERROR(Check(model_.Predict({*feature_tensor, *length_tensor}, outputs), "Predict"));
  if (outputs->size() != 2 || (*outputs)[0].DataType() != mindspore::DataType::kNumberTypeFloat32 ||
      (*outputs)[1].DataType() != mindspore::DataType::kNumberTypeInt32) {
    return Status::Error("the model returned " + std::to_string(outputs->size()) +
                         " outputs; expected log-probabilities (float32) and output lengths (int32)");
  }
  return Status();
}

}  // namespace jasper
