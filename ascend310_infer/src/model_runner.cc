// Loading, resizing and running the model through the MindSpore C++ inference API (include/api/).
// The same code runs on Ascend (MindSpore with the Ascend backend) and on CPU (MindSpore Lite).
#include "model_runner.h"

#include <cstdio>
#include <filesystem>
#include <functional>
#include <utility>

#include "include/api/context.h"
#include "include/api/serialization.h"

namespace zoo {
namespace {

// MindSpore Lite builds from the model file and refuses a GraphCell (logging an ERROR line as it
// does); the full MindSpore runtime is the other way round.  Try first what the linked runtime takes,
// so that a successful run logs no error.  CMakeLists.txt defines this for Lite runtimes.
#ifdef ZOO_MODEL_FILE_FIRST
constexpr bool kModelFileFirst = true;
#else
constexpr bool kModelFileFirst = false;
#endif

Status Check(const mindspore::Status &status, const std::string &what) {
  if (status == mindspore::kSuccess) return Status();
  return Status::Error(what + " failed: " + status.ToString());
}

bool ToElementType(mindspore::DataType type, ElementType *out) {
  switch (type) {
    case mindspore::DataType::kNumberTypeFloat32: *out = ElementType::kFloat32; return true;
    case mindspore::DataType::kNumberTypeFloat16: *out = ElementType::kFloat16; return true;
    case mindspore::DataType::kNumberTypeInt32: *out = ElementType::kInt32; return true;
    case mindspore::DataType::kNumberTypeInt64: *out = ElementType::kInt64; return true;
    default: return false;
  }
}

std::string ShapesString(const std::vector<std::vector<int64_t>> &shapes) {
  std::string out;
  for (const auto &shape : shapes) out += (out.empty() ? "" : ", ") + ShapeString(shape);
  return out;
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
  RETURN_IF_ERROR(made->ReadInputs());
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
  const bool lite_flat_buffer = std::filesystem::path(path).extension() == ".ms";
  // The model-zoo route (load the graph, build a GraphCell) and the route from the file itself.
  const auto build_graph_cell = [&]() {
    mindspore::Graph graph;
    mindspore::Status status = mindspore::Serialization::Load(path, mindspore::kMindIR, &graph);
    return status == mindspore::kSuccess ? model_.Build(mindspore::GraphCell(graph), context) : status;
  };
  const auto build_file = [&]() {
    return model_.Build(path, lite_flat_buffer ? mindspore::kMindIR_Lite : mindspore::kMindIR, context);
  };
  struct Route {
    const char *name;
    std::function<mindspore::Status()> build;
  };
  std::vector<Route> routes = {{"GraphCell", build_graph_cell}, {"model file", build_file}};
  if (kModelFileFirst || lite_flat_buffer) std::swap(routes[0], routes[1]);
  if (lite_flat_buffer) routes.pop_back();  // a .ms file holds no MindIR graph
  std::string failures;
  for (const auto &route : routes) {
    const mindspore::Status status = route.build();
    if (status == mindspore::kSuccess) {
      build_route_ = route.name;
      return Status();
    }
    failures += std::string(failures.empty() ? "" : "; ") + "the " + route.name + " route: " + status.ToString();
    if (&route != &routes.back()) {
      std::fprintf(stderr, "note: the %s route failed (%s); trying the next one\n", route.name,
                   status.ToString().c_str());
    }
  }
  return Status::Error("building the model " + path + " failed (" + failures + ")");
}

Status ModelRunner::ReadInputs() {
  const std::vector<mindspore::MSTensor> inputs = model_.GetInputs();
  if (inputs.empty()) return Status::Error("the model has no inputs");
  for (const auto &input : inputs) {
    ElementType type;
    if (!ToElementType(input.DataType(), &type)) {
      return Status::Error("the model's input '" + input.Name() + "' has data type " +
                           std::to_string(static_cast<int>(input.DataType())) +
                           ", which the runner does not feed (float32, float16, int32, int64)");
    }
    input_names_.push_back(input.Name());
    input_types_.push_back(type);
    input_data_types_.push_back(input.DataType());
    built_shapes_.push_back(input.Shape());
  }
  shapes_ = built_shapes_;
  return Status();
}

Status ModelRunner::PrepareFor(const std::vector<std::vector<int64_t>> &shapes) {
  if (shapes.size() != shapes_.size()) {
    return Status::Error(std::to_string(shapes.size()) + " inputs given; the model takes " +
                         std::to_string(shapes_.size()));
  }
  if (shapes == shapes_) return Status();
  for (size_t i = 0; i < shapes.size(); ++i) {
    if (shapes[i].size() != built_shapes_[i].size()) {
      return Status::Error("input '" + input_names_[i] + "' is listed as " + ShapeString(shapes[i]) + " (" +
                           std::to_string(shapes[i].size()) + " dimensions), but the model takes " +
                           ShapeString(built_shapes_[i]));
    }
  }
  const mindspore::Status status = model_.Resize(model_.GetInputs(), shapes);
  if (status != mindspore::kSuccess) {
    return Status::Error("the model takes inputs " + ShapesString(built_shapes_) + " and cannot be resized to " +
                         ShapesString(shapes) + " (" + status.ToString() +
                         "); it has a fixed input shape: preprocess for this very model (preprocess.py --mindir "
                         "MODEL), or export it with the --n_frames/--batch_size giving the listed shapes");
  }
  shapes_ = shapes;
  return Status();
}

Status ModelRunner::Predict(const std::vector<std::vector<uint8_t>> &inputs,
                            std::vector<mindspore::MSTensor> *outputs) {
  if (inputs.size() != shapes_.size()) return Status::Error("wrong number of input buffers");
  std::vector<OwnedTensor> owned;
  std::vector<mindspore::MSTensor> tensors;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].size() != ByteSize({input_types_[i], shapes_[i]})) {
      return Status::Error("input '" + input_names_[i] + "' has " + std::to_string(inputs[i].size()) +
                           " bytes, not those of " + Describe({input_types_[i], shapes_[i]}));
    }
    owned.emplace_back(mindspore::MSTensor::CreateTensor(input_names_[i], input_data_types_[i], shapes_[i],
                                                         inputs[i].data(), inputs[i].size()));
    if (!owned.back()) return Status::Error("cannot allocate the input tensor '" + input_names_[i] + "'");
    tensors.push_back(*owned.back());
  }
  outputs->clear();
  RETURN_IF_ERROR(Check(model_.Predict(tensors, outputs), "Predict"));
  if (outputs->empty()) return Status::Error("the model returned no outputs");
  return Status();
}

}  // namespace zoo
