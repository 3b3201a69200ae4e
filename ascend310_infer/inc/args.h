// Command-line options of the runner.
#ifndef JASPER_INFER_ARGS_H_
#define JASPER_INFER_ARGS_H_

#include <cstdint>
#include <string>

#include "status.h"

namespace jasper {

enum class Device { kAscend, kCpu };

struct Options {
  std::string mindir_path;
  std::string input_dir;   // preprocess.py's output: utterances.txt, features/, lengths/
  std::string result_dir;  // receives <utt_id>_0.bin, <utt_id>_1.bin and timing.tsv
  Device device = Device::kAscend;
  uint32_t device_id = 0;
  bool help = false;
};

// Parses `--name value` or `--name=value` arguments; every option but --device_target/--device_id is required.
Status ParseArgs(int argc, const char *const *argv, Options *options);

// The --help text.
std::string Usage(const std::string &program);

}  // namespace jasper

#endif  // JASPER_INFER_ARGS_H_
