// Reading utterances.txt.  The runner pairs inputs and outputs through this list only, never through
// directory listings, so extra or missing files cannot shift one utterance onto another.
#include "utterance_list.h"

#include <fstream>
#include <set>
#include <stdexcept>

namespace jasper {

Status ReadUtteranceList(const std::string &path, std::vector<Utterance> *utterances) {
  std::ifstream in(path);
  if (!in) return Status::Error("cannot read the utterance list " + path + " (run preprocess.py first)");
  std::set<std::string> seen;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(number);
    const size_t tab1 = line.find('\t');
    const size_t tab2 = tab1 == std::string::npos ? tab1 : line.find('\t', tab1 + 1);
    if (tab2 == std::string::npos) {
      return Status::Error(where + ": expected 'utt_id<TAB>frames<TAB>transcript'");
    }
    Utterance utt;
    utt.id = line.substr(0, tab1);
    const std::string frames = line.substr(tab1 + 1, tab2 - tab1 - 1);
    try {
      size_t used = 0;
      utt.frames = std::stoll(frames, &used);
      if (used != frames.size() || utt.frames <= 0) throw std::invalid_argument(frames);
    } catch (const std::exception &) {
      return Status::Error(where + ": frame count '" + frames + "' is not a positive integer");
    }
    if (utt.id.empty() || utt.id.find('/') != std::string::npos) {
      return Status::Error(where + ": utterance id '" + utt.id + "' is empty or contains '/'");
    }
    if (!seen.insert(utt.id).second) return Status::Error(where + ": utterance '" + utt.id + "' is listed twice");
    utterances->push_back(std::move(utt));
  }
  if (in.bad()) return Status::Error("error while reading " + path);
  if (utterances->empty()) return Status::Error(path + " lists no utterances");
  return Status();
}

}  // namespace jasper
