// Raw tensor files (.bin): reading with a size check, writing atomically.
#ifndef ZOO_INFER_TENSOR_IO_H_
#define ZOO_INFER_TENSOR_IO_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "status.h"

namespace zoo {

// Reads the whole of `path` into `data`; fails unless it holds exactly `expected_bytes` bytes.
// `description` (e.g. "float32 [1, 64, 368], as listed at inputs.txt:2") goes into the error message.
Status ReadTensorFile(const std::string &path, size_t expected_bytes, const std::string &description,
                      std::vector<uint8_t> *data);

// Writes `size` bytes to `path` through a temporary file renamed into place, so `path` is either
// complete or absent, even if the process dies half-way.
Status WriteFileAtomically(const std::string &path, const void *data, size_t size);

}  // namespace zoo

#endif  // ZOO_INFER_TENSOR_IO_H_
