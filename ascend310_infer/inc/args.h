// Command-line options of the runner.
#ifndef ZOO_INFER_ARGS_H_
#define ZOO_INFER_ARGS_H_

#include <cstdint>
#include <string>

#include "status.h"

namespace zoo {

enum class Device { kAscend, kCpu };

struct Options {
  std::string mindir_path;
  std::string input_dir;   // preprocess.py's output: inputs.txt and the .bin files it lists
  std::string result_dir;  // receives <utt_id>_<k>.bin for every model output k, and timing.tsv
  Device device = Device::kAscend;
  uint32_t device_id = 0;
  bool help = false;
};

// Parses `--name value` or `--name=value` arguments; every option but --device_target/--device_id is required.
Status ParseArgs(int argc, const char *const *argv, Options *options);

// The --help text.
std::string Usage(const std::string &program);

}  // namespace zoo

#endif  // ZOO_INFER_ARGS_H_
