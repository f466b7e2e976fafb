// flashmfa: the one exception type every entry point throws, and its status codes.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace flashmfa {

// Status codes, stable across releases (Error::status(); Python's exceptions carry the name as
// .status).
enum class Status : int {
  ok = 0,
  invalid_argument = 1,   // a value or shape is wrong
  invalid_dtype = 2,      // a dtype is wrong
  unsupported = 3,        // valid, but no kernel covers it (e.g. a d_k/d_v pair)
  bad_page_index = 4,     // block table entry outside [0, num_pages)
  bad_seqlen = 5,         // a length is negative or longer than the block table holds
  cuda_error = 6,         // the CUDA runtime reported an error
  no_device = 7,          // the tensors are on a device this build cannot drive
};

const char* status_name(Status s) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

namespace detail {
// Builds "flashmfa: <arg>: expected <expected>, got <actual>[ (<why>)]".
template <class Expected, class Actual>
[[noreturn]] void fail_arg(Status status, const char* arg, const Expected& expected,
                           const Actual& actual, const std::string& why = {}) {
  std::ostringstream os;
  os << "flashmfa: " << arg << ": expected " << expected << ", got " << actual;
  if (!why.empty()) os << " (" << why << ")";
  throw Error(status, os.str());
}
}  // namespace detail

}  // namespace flashmfa
