// The list of utterances written by preprocess.py: `utt_id<TAB>frames<TAB>reference` per line.
#ifndef JASPER_INFER_UTTERANCE_LIST_H_
#define JASPER_INFER_UTTERANCE_LIST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "status.h"

namespace jasper {

struct Utterance {
  std::string id;
  int64_t frames = 0;  // padded frame count T of features/<id>.bin, shaped [1, n_mels, T]
};

// Reads `path`; the order of the file is the order of inference.  Errors name the file and line.
Status ReadUtteranceList(const std::string &path, std::vector<Utterance> *utterances);

}  // namespace jasper

#endif  // JASPER_INFER_UTTERANCE_LIST_H_
