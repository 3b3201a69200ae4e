// The input list written by preprocess.py (`inputs.txt`): which files feed which model input, per utterance.
//
//   #utt_id<TAB>features<TAB>lengths
//   utt1<TAB>features/utt1.bin:float32:1x64x400<TAB>lengths/utt1.bin:int32:1
//
// UTF-8, TAB-separated.  The header names the model's inputs in the model's input order (the names are
// informative; their count must match the model).  Each later line is an utterance id and one
// `relative_path:dtype:shape` field per input: the path is relative to the list's folder (never
// absolute, never through '..'), dtype is float32|float16|int32|int64 and the shape's positive
// dimensions are joined by 'x'.  Empty lines are ignored.
#ifndef ZOO_INFER_INPUT_LIST_H_
#define ZOO_INFER_INPUT_LIST_H_

#include <string>
#include <vector>

#include "status.h"
#include "tensor_spec.h"

namespace zoo {

struct InputFile {
  std::string path;  // as listed: relative to the list's folder
  TensorSpec spec;
};

struct Utterance {
  std::string id;
  std::string where;  // "<list path>:<line>", for messages about this utterance
  std::vector<InputFile> inputs;  // one per model input, in the model's order
};

struct InputList {
  std::string path;
  std::string header_where;              // "<list path>:<line>" of the header
  std::vector<std::string> input_names;  // from the header
  std::vector<Utterance> utterances;     // in the list's order, which is the order of inference
};

// Reads and checks `path`.  Errors name the file and line.
Status ReadInputList(const std::string &path, InputList *list);

}  // namespace zoo

#endif  // ZOO_INFER_INPUT_LIST_H_
