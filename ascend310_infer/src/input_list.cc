// Reading inputs.txt.  The runner pairs inputs and outputs through this list only, never through
// directory listings, so extra or missing files cannot shift one utterance onto another.
#include "input_list.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

namespace zoo {
namespace {

constexpr char kHeaderStart[] = "#utt_id";
constexpr char kFieldFormat[] = "'relative_path:dtype:shape' (e.g. features/u1.bin:float32:1x64x400)";

std::vector<std::string> SplitTabs(const std::string &line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t tab = line.find('\t', start);
    fields.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) return fields;
    start = tab + 1;
  }
}

// A listed path must stay inside the list's folder.
Status CheckRelativePath(const std::string &where, const std::string &path) {
  const std::filesystem::path p(path);
  if (path.empty() || p.has_root_path()) {
    return Status::Error(where + ": input path '" + path + "' must be relative to the list's folder");
  }
  for (const auto &part : p) {
    if (part == "..") return Status::Error(where + ": input path '" + path + "' must not contain '..'");
  }
  return Status();
}

// `relative_path:dtype:shape`; split from the right, so the path itself may hold ':'.
Status ParseInputField(const std::string &where, const std::string &name, const std::string &field,
                       InputFile *input) {
  const size_t shape_colon = field.rfind(':');
  const size_t type_colon = shape_colon == std::string::npos || shape_colon == 0
                                ? std::string::npos
                                : field.rfind(':', shape_colon - 1);
  if (type_colon == std::string::npos) {
    return Status::Error(where + ": input '" + name + "' is '" + field + "'; expected " + kFieldFormat);
  }
  input->path = field.substr(0, type_colon);
  const std::string type = field.substr(type_colon + 1, shape_colon - type_colon - 1);
  const std::string shape = field.substr(shape_colon + 1);
  RETURN_IF_ERROR(CheckRelativePath(where, input->path));
  if (!ParseElementType(type, &input->spec.type)) {
    return Status::Error(where + ": input '" + name + "' has dtype '" + type +
                         "'; expected float32, float16, int32 or int64");
  }
  if (!ParseShape(shape, &input->spec.shape)) {
    return Status::Error(where + ": input '" + name + "' has shape '" + shape +
                         "'; expected positive dimensions joined by 'x' (e.g. 1x64x400)");
  }
  return Status();
}

Status ParseHeader(const std::string &where, const std::string &line, std::vector<std::string> *names) {
  std::vector<std::string> fields = SplitTabs(line);
  if (fields[0] != kHeaderStart || fields.size() < 2) {
    return Status::Error(where + ": expected the header '#utt_id<TAB>input name...' (one name per model input), "
                         "got '" + line + "'");
  }
  names->assign(fields.begin() + 1, fields.end());
  for (const auto &name : *names) {
    if (name.empty()) return Status::Error(where + ": the header has an empty input name");
  }
  return Status();
}

Status ParseUtterance(const std::string &where, const std::string &line, const std::vector<std::string> &names,
                      Utterance *utt) {
  const std::vector<std::string> fields = SplitTabs(line);
  if (fields.size() != names.size() + 1) {
    return Status::Error(where + ": " + std::to_string(fields.size() - 1) + " input fields, but the header names " +
                         std::to_string(names.size()) + " inputs");
  }
  utt->id = fields[0];
  utt->where = where;
  if (utt->id.empty() || utt->id.find('/') != std::string::npos || utt->id.front() == '#') {
    return Status::Error(where + ": utterance id '" + utt->id + "' is empty, contains '/' or starts with '#'");
  }
  utt->inputs.resize(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    RETURN_IF_ERROR(ParseInputField(where, names[i], fields[i + 1], &utt->inputs[i]));
  }
  return Status();
}

}  // namespace

Status ReadInputList(const std::string &path, InputList *list) {
  std::ifstream in(path);
  if (!in) return Status::Error("cannot read the input list " + path + " (run preprocess.py first)");
  list->path = path;
  std::set<std::string> seen;
  std::string line;
  bool have_header = false;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a UTF-8 byte-order mark
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(number);
    if (!have_header) {
      RETURN_IF_ERROR(ParseHeader(where, line, &list->input_names));
      list->header_where = where;
      have_header = true;
      continue;
    }
    Utterance utt;
    RETURN_IF_ERROR(ParseUtterance(where, line, list->input_names, &utt));
    if (!seen.insert(utt.id).second) return Status::Error(where + ": utterance '" + utt.id + "' is listed twice");
    list->utterances.push_back(std::move(utt));
  }
  if (in.bad()) return Status::Error("error while reading " + path);
  if (list->utterances.empty()) return Status::Error(path + " lists no utterances");
  return Status();
}

}  // namespace zoo
