// Command-line parsing: a small fixed set of `--name value` options, no dependency on gflags.
#include "args.h"

#include <map>
#include <stdexcept>
#include <string>

namespace zoo {
namespace {

Status ParseDevice(const std::string &value, Device *device) {
  if (value == "Ascend310" || value == "Ascend") {
    *device = Device::kAscend;
  } else if (value == "CPU") {
    *device = Device::kCpu;
  } else {
    return Status::Error("--device_target must be Ascend310, Ascend or CPU, got '" + value + "'");
  }
  return Status();
}

Status ParseDeviceId(const std::string &value, uint32_t *device_id) {
  try {
    size_t used = 0;
    const unsigned long id = std::stoul(value, &used);  // NOLINT(runtime/int): what stoul returns
    if (used != value.size() || id > 0xFFFFu) throw std::invalid_argument(value);
    *device_id = static_cast<uint32_t>(id);
  } catch (const std::exception &) {
    return Status::Error("--device_id must be a small non-negative integer, got '" + value + "'");
  }
  return Status();
}

}  // namespace

std::string Usage(const std::string &program) {
  return "usage: " + program +
         " --mindir_path MODEL --input_dir PREPROCESS_DIR --result_dir DIR"
         " [--device_target Ascend310|Ascend|CPU] [--device_id N]\n"
         "  Runs the model on every utterance listed in PREPROCESS_DIR/inputs.txt (written by\n"
         "  preprocess.py), feeding the listed .bin files as the model's inputs in their order, and\n"
         "  writes every output k of the model to DIR/<utt_id>_<k>.bin, plus DIR/timing.tsv.\n"
         "  inputs.txt: a header '#utt_id<TAB>name...' (one name per model input), then per utterance\n"
         "  'utt_id<TAB>path:dtype:shape...' with paths relative to PREPROCESS_DIR,\n"
         "  dtype float32|float16|int32|int64 and shape like 1x64x400.\n";
}

Status ParseArgs(int argc, const char *const *argv, Options *options) {
  std::map<std::string, std::string> values;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      options->help = true;
      return Status();
    }
    if (arg.rfind("--", 0) != 0) return Status::Error("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Status::Error("option --" + name + " needs a value");
    }
    values[name] = value;
  }
  for (const auto &[name, value] : values) {
    if (name == "mindir_path") {
      options->mindir_path = value;
    } else if (name == "input_dir") {
      options->input_dir = value;
    } else if (name == "result_dir") {
      options->result_dir = value;
    } else if (name == "device_target") {
      RETURN_IF_ERROR(ParseDevice(value, &options->device));
    } else if (name == "device_id") {
      RETURN_IF_ERROR(ParseDeviceId(value, &options->device_id));
    } else {
      return Status::Error("unknown option --" + name);
    }
  }
  for (const auto *required : {"mindir_path", "input_dir", "result_dir"}) {
    if (values.count(required) == 0 || values[required].empty()) {
      return Status::Error(std::string("missing required option --") + required);
    }
  }
  return Status();
}

}  // namespace zoo
