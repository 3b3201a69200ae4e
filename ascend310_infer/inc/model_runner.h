// A loaded acoustic model: features [1, n_mels, T] float32 + lengths [1] int32 →
// log-probabilities [1, T', classes] float32 + output lengths [1] int32.
#ifndef JASPER_INFER_MODEL_RUNNER_H_
#define JASPER_INFER_MODEL_RUNNER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "include/api/model.h"
#include "include/api/types.h"
#include "status.h"

namespace jasper {

class ModelRunner {
 public:
  // Loads and builds the model of `options` on its device.
  static Status Create(const Options &options, std::unique_ptr<ModelRunner> *runner);

  ModelRunner(const ModelRunner &) = delete;
  ModelRunner &operator=(const ModelRunner &) = delete;

  // How the model was built (for the log): "GraphCell" or "model file".
  const std::string &build_route() const { return build_route_; }
  // The feature input's shape as built, e.g. [1, 64, 1616] (-1 for open dimensions).
  const std::vector<int64_t> &built_feature_shape() const { return built_feature_shape_; }

  // Makes the model take features of `frames` frames, resizing it when it was built for another length.
  Status PrepareFor(int64_t frames);
  // Bytes of the features and lengths files the prepared input shapes need, and their description.
  size_t FeatureBytes() const;
  size_t LengthBytes() const;
  std::string FeatureDescription() const;
  std::string LengthDescription() const;

  // Runs the model; `features` and `lengths` must hold FeatureBytes() and LengthBytes() bytes.
  // `outputs` receives the log-probabilities (float32) and the output lengths (int32).
  Status Predict(const std::vector<uint8_t> &features, const std::vector<uint8_t> &lengths,
                 std::vector<mindspore::MSTensor> *outputs);

 private:
  ModelRunner() = default;
  Status Build(const Options &options);
  Status CheckInputs();

  mindspore::Model model_;
  std::string build_route_;
  std::vector<int64_t> built_feature_shape_;
  std::vector<std::vector<int64_t>> input_shapes_;  // current shapes: features, lengths
  std::vector<std::string> input_names_;
};

}  // namespace jasper

#endif  // JASPER_INFER_MODEL_RUNNER_H_
