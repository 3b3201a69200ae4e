// Element types and shapes of tensor files.
#include "tensor_spec.h"

#include <limits>
#include <sstream>

namespace zoo {
namespace {

struct TypeInfo {
  ElementType type;
  const char *name;
  size_t size;
};

constexpr TypeInfo kTypes[] = {
    {ElementType::kFloat32, "float32", 4},
    {ElementType::kFloat16, "float16", 2},
    {ElementType::kInt32, "int32", 4},
    {ElementType::kInt64, "int64", 8},
};

const TypeInfo &Info(ElementType type) {
  for (const auto &info : kTypes) {
    if (info.type == type) return info;
  }
  return kTypes[0];  // unreachable: every enumerator is in the table
}

std::string JoinShape(const std::vector<int64_t> &shape, const char *separator) {
  std::ostringstream out;
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? separator : "") << shape[i];
  return out.str();
}

}  // namespace

bool ParseElementType(const std::string &name, ElementType *type) {
  for (const auto &info : kTypes) {
    if (name == info.name) {
      *type = info.type;
      return true;
    }
  }
  return false;
}

const char *ElementTypeName(ElementType type) { return Info(type).name; }

size_t ElementSize(ElementType type) { return Info(type).size; }

bool ParseShape(const std::string &text, std::vector<int64_t> *shape) {
  shape->clear();
  // Largest element count whose bytes (at most 8 per element) still fit in size_t.
  const uint64_t limit = std::numeric_limits<size_t>::max() / 8;
  uint64_t elements = 1;
  size_t start = 0;
  while (true) {
    const size_t end = text.find('x', start);
    const std::string dim = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (dim.empty() || dim.size() > 12 || dim.find_first_not_of("0123456789") != std::string::npos) return false;
    const int64_t value = std::stoll(dim);
    if (value <= 0 || elements > limit / static_cast<uint64_t>(value)) return false;
    elements *= static_cast<uint64_t>(value);
    shape->push_back(value);
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

size_t ByteSize(const TensorSpec &spec) {
  size_t n = ElementSize(spec.type);
  for (int64_t d : spec.shape) n *= static_cast<size_t>(d);
  return n;
}

std::string ShapeString(const std::vector<int64_t> &shape) { return "[" + JoinShape(shape, ", ") + "]"; }

std::string ShapeListString(const std::vector<int64_t> &shape) { return JoinShape(shape, "x"); }

std::string Describe(const TensorSpec &spec) {
  return std::string(ElementTypeName(spec.type)) + " " + ShapeString(spec.shape);
}

}  // namespace zoo
