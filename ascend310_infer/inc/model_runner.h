// A loaded model with N inputs and M outputs, run on one utterance's tensors at a time.
#ifndef ZOO_INFER_MODEL_RUNNER_H_
#define ZOO_INFER_MODEL_RUNNER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "include/api/model.h"
#include "include/api/types.h"
#include "status.h"
#include "tensor_spec.h"

namespace zoo {

class ModelRunner {
 public:
  // Loads and builds the model of `options` on its device.
  static Status Create(const Options &options, std::unique_ptr<ModelRunner> *runner);

  ModelRunner(const ModelRunner &) = delete;
  ModelRunner &operator=(const ModelRunner &) = delete;

  // How the model was built (for the log): "GraphCell" or "model file".
  const std::string &build_route() const { return build_route_; }
  // The model's inputs, in its order: names, element types and shapes as built (-1: open dimension).
  size_t input_count() const { return input_names_.size(); }
  const std::vector<std::string> &input_names() const { return input_names_; }
  ElementType input_type(size_t i) const { return input_types_[i]; }
  const std::vector<int64_t> &built_shape(size_t i) const { return built_shapes_[i]; }

  // Makes the model take inputs of `shapes` (one per input), resizing it when they differ from the
  // current ones.  A model exported with a fixed shape cannot change it: the error says what to do.
  Status PrepareFor(const std::vector<std::vector<int64_t>> &shapes);

  // Runs the model on `inputs`, one buffer per input holding a tensor of the prepared shape and the
  // input's element type.  `outputs` receives every output of the model, in its order.
  Status Predict(const std::vector<std::vector<uint8_t>> &inputs, std::vector<mindspore::MSTensor> *outputs);

 private:
  ModelRunner() = default;
  Status Build(const Options &options);
  Status ReadInputs();

  mindspore::Model model_;
  std::string build_route_;
  std::vector<std::string> input_names_;
  std::vector<ElementType> input_types_;
  std::vector<mindspore::DataType> input_data_types_;
  std::vector<std::vector<int64_t>> built_shapes_;
  std::vector<std::vector<int64_t>> shapes_;  // current input shapes
};

}  // namespace zoo

#endif  // ZOO_INFER_MODEL_RUNNER_H_
