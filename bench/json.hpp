// flashmfa-bench: a small JSON value, reader and writer. The bench writes its results and reads
// earlier ones (its own, FlashMLA's and the Triton peer's files) without a third-party library,
// so the tool builds wherever the library does.
//
// The reader accepts the JSON that Python's json module writes, including the NaN, Infinity and
// -Infinity literals it emits for non-finite floats (triton-peer-h100.json has a NaN); the
// writer emits null for non-finite numbers so that strict readers accept our files.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace flashmfa::bench {

// A parse or type error; the message says where (byte offset) or which key.
class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Json {
 public:
  enum class Kind { null, boolean, number, string, array, object };
  using Array = std::vector<Json>;
  // Keys keep insertion order (a results file reads in the order it was written).
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() = default;                       // null
  Json(std::nullptr_t) {}
  Json(bool b) : kind_(Kind::boolean), bool_(b) {}
  Json(double d) : kind_(Kind::number), num_(d) {}
  Json(int i) : kind_(Kind::number), num_(i) {}
  Json(int64_t i) : kind_(Kind::number), num_(static_cast<double>(i)) {}
  Json(const char* s) : kind_(Kind::string), str_(s) {}
  Json(std::string s) : kind_(Kind::string), str_(std::move(s)) {}
  Json(Array a) : kind_(Kind::array), arr_(std::make_shared<Array>(std::move(a))) {}
  Json(Object o) : kind_(Kind::object), obj_(std::make_shared<Object>(std::move(o))) {}

  static Json array() { return Json(Array{}); }
  static Json object() { return Json(Object{}); }

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_bool() const { return kind_ == Kind::boolean; }
  bool is_number() const { return kind_ == Kind::number; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_array() const { return kind_ == Kind::array; }
  bool is_object() const { return kind_ == Kind::object; }

  // Typed access; throws JsonError on a kind mismatch.
  bool as_bool() const;
  double as_number() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& as_array();
  const Object& as_object() const;

  // Object access. find returns nullptr when the key is absent (or this is not an object).
  const Json* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Throws JsonError naming the key when absent.
  const Json& at(const std::string& key) const;
  // Inserts or replaces (this must be an object).
  void set(const std::string& key, Json value);
  // Appends (this must be an array).
  void push(Json value);

  // Writes indented JSON (two spaces), non-finite numbers as null.
  std::string dump(int indent = 2) const;

  // Parses a whole document (trailing whitespace only); throws JsonError with the offset.
  static Json parse(const std::string& text);

 private:
  void dump_to(std::string& out, int indent, int depth) const;

  Kind kind_ = Kind::null;
  bool bool_ = false;
  double num_ = 0.0;
  std::string str_;
  std::shared_ptr<Array> arr_;   // shared: copies of a large results document stay cheap
  std::shared_ptr<Object> obj_;
};

// Reads and parses a file; throws JsonError naming the file when it cannot be read or parsed.
Json read_json_file(const std::string& path);
// Writes dump() to a file; throws JsonError naming the file when it cannot be written.
void write_json_file(const std::string& path, const Json& value);

}  // namespace flashmfa::bench
