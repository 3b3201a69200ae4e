// The runner's error type and its one status-check macro.
#ifndef ZOO_INFER_STATUS_H_
#define ZOO_INFER_STATUS_H_

#include <string>
#include <utility>

namespace zoo {

// Success, or a failure with a message meant for the user (what failed, on which file, what to do).
class Status {
 public:
  Status() = default;
  static Status Error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return ok_; }
  const std::string &message() const { return message_; }

 private:
  explicit Status(std::string message) : ok_(false), message_(std::move(message)) {}
  bool ok_ = true;
  std::string message_;
};

}  // namespace zoo

// Evaluates `expr` (a zoo::Status) once and returns it from the calling function when it failed.
#define RETURN_IF_ERROR(expr)              \
  do {                                     \
    ::zoo::Status status_macro_ = (expr);  \
    if (!status_macro_.ok()) {             \
      return status_macro_;                \
    }                                      \
  } while (false)

#endif  // ZOO_INFER_STATUS_H_
