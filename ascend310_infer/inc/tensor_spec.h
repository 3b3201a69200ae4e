// What a tensor file holds: its element type and shape, and the arithmetic and text around them.
#ifndef ZOO_INFER_TENSOR_SPEC_H_
#define ZOO_INFER_TENSOR_SPEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace zoo {

// The element types the input list can name (all little-endian, as numpy's tofile() writes them).
enum class ElementType { kFloat32, kFloat16, kInt32, kInt64 };

struct TensorSpec {
  ElementType type = ElementType::kFloat32;
  std::vector<int64_t> shape;  // every dimension positive
};

// "float32" → kFloat32 etc.; false for any other name.
bool ParseElementType(const std::string &name, ElementType *type);
const char *ElementTypeName(ElementType type);
size_t ElementSize(ElementType type);

// "1x64x400" → {1, 64, 400}; false unless every dimension is a positive integer and the tensor's
// byte size fits in size_t.
bool ParseShape(const std::string &text, std::vector<int64_t> *shape);

// Bytes of a tensor file holding `spec`.
size_t ByteSize(const TensorSpec &spec);

// [1, 64, 400] (-1 stays -1: an open dimension of a model input).
std::string ShapeString(const std::vector<int64_t> &shape);
// 1x64x400, the list's notation.
std::string ShapeListString(const std::vector<int64_t> &shape);
// "float32 [1, 64, 400]".
std::string Describe(const TensorSpec &spec);

}  // namespace zoo

#endif  // ZOO_INFER_TENSOR_SPEC_H_
