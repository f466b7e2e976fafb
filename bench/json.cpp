// flashmfa-bench: JSON reader and writer (see json.hpp for what is accepted and emitted).
#include "json.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

namespace flashmfa::bench {

namespace {

const char* kind_name(Json::Kind k) {
  switch (k) {
    case Json::Kind::null: return "null";
    case Json::Kind::boolean: return "a boolean";
    case Json::Kind::number: return "a number";
    case Json::Kind::string: return "a string";
    case Json::Kind::array: return "an array";
    case Json::Kind::object: return "an object";
  }
  return "?";
}

[[noreturn]] void type_error(const char* wanted, Json::Kind got) {
  throw JsonError(std::string("json: expected ") + wanted + ", got " + kind_name(got));
}

// Recursive-descent parser over the whole document.
class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  Json document() {
    Json v = value();
    skip_ws();
    if (pos_ != s_.size()) fail("trailing characters after the document");
    return v;
  }

 private:
  // Nesting deeper than this is not a results file; refusing it keeps the stack bounded.
  static constexpr int kMaxDepth = 64;

  [[noreturn]] void fail(const std::string& why) const {
    throw JsonError("json: " + why + " at byte " + std::to_string(pos_));
  }

  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t'))
      ++pos_;
  }

  bool consume(const char* word) {
    const std::string w(word);
    if (s_.compare(pos_, w.size(), w) != 0) return false;
    pos_ += w.size();
    return true;
  }

  Json value() {
    if (++depth_ > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    skip_ws();
    if (pos_ >= s_.size()) fail("unexpected end of input");
    Json v;
    const char c = s_[pos_];
    if (c == '{') v = object();
    else if (c == '[') v = array();
    else if (c == '"') v = Json(string());
    else if (consume("true")) v = Json(true);
    else if (consume("false")) v = Json(false);
    else if (consume("null")) v = Json();
    else if (consume("NaN")) v = Json(std::numeric_limits<double>::quiet_NaN());
    else if (consume("Infinity")) v = Json(std::numeric_limits<double>::infinity());
    else if (consume("-Infinity")) v = Json(-std::numeric_limits<double>::infinity());
    else v = Json(number());
    --depth_;
    return v;
  }

  Json object() {
    ++pos_;  // '{'
    Json obj = Json::object();
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') { ++pos_; return obj; }
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
      std::string key = string();
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') fail("expected ':'");
      ++pos_;
      obj.set(key, value());
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') { ++pos_; continue; }
      if (pos_ < s_.size() && s_[pos_] == '}') { ++pos_; return obj; }
      fail("expected ',' or '}'");
    }
  }

  Json array() {
    ++pos_;  // '['
    Json arr = Json::array();
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') { ++pos_; return arr; }
    for (;;) {
      arr.push(value());
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') { ++pos_; continue; }
      if (pos_ < s_.size() && s_[pos_] == ']') { ++pos_; return arr; }
      fail("expected ',' or ']'");
    }
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xc0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += char(0xe0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    } else {
      out += char(0xf0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3f));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    }
  }

  uint32_t hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return v;
  }

  std::string string() {
    ++pos_;  // '"'
    std::string out;
    while (pos_ < s_.size()) {
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (c != '\\') { out += c; continue; }
      if (pos_ >= s_.size()) break;
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          // A high surrogate pairs with the low one that must follow.
          if (cp >= 0xd800 && cp < 0xdc00 && consume("\\u")) {
            const uint32_t lo = hex4();
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          put_utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
    fail("unterminated string");
  }

  double number() {
    const size_t start = pos_;
    if (pos_ < s_.size() && (s_[pos_] == '-' || s_[pos_] == '+')) ++pos_;
    while (pos_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[pos_])) ||
                                s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E' ||
                                s_[pos_] == '-' || s_[pos_] == '+'))
      ++pos_;
    double v = 0.0;
    const auto [end, ec] = std::from_chars(s_.data() + start, s_.data() + pos_, v);
    if (ec != std::errc() || end != s_.data() + pos_ || pos_ == start) {
      pos_ = start;
      fail("expected a value");
    }
    return v;
  }

  const std::string& s_;
  size_t pos_ = 0;
  int depth_ = 0;
};

void dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace

bool Json::as_bool() const {
  if (kind_ != Kind::boolean) type_error("a boolean", kind_);
  return bool_;
}
double Json::as_number() const {
  if (kind_ != Kind::number) type_error("a number", kind_);
  return num_;
}
const std::string& Json::as_string() const {
  if (kind_ != Kind::string) type_error("a string", kind_);
  return str_;
}
const Json::Array& Json::as_array() const {
  if (kind_ != Kind::array) type_error("an array", kind_);
  return *arr_;
}
Json::Array& Json::as_array() {
  if (kind_ != Kind::array) type_error("an array", kind_);
  if (arr_.use_count() > 1) arr_ = std::make_shared<Array>(*arr_);  // copy on write
  return *arr_;
}
const Json::Object& Json::as_object() const {
  if (kind_ != Kind::object) type_error("an object", kind_);
  return *obj_;
}

const Json* Json::find(const std::string& key) const {
  if (kind_ != Kind::object) return nullptr;
  for (const auto& [k, v] : *obj_)
    if (k == key) return &v;
  return nullptr;
}

const Json& Json::at(const std::string& key) const {
  if (kind_ != Kind::object) type_error("an object", kind_);
  if (const Json* v = find(key)) return *v;
  throw JsonError("json: missing key \"" + key + "\"");
}

void Json::set(const std::string& key, Json value) {
  if (kind_ != Kind::object) type_error("an object", kind_);
  if (obj_.use_count() > 1) obj_ = std::make_shared<Object>(*obj_);  // copy on write
  for (auto& [k, v] : *obj_)
    if (k == key) { v = std::move(value); return; }
  obj_->emplace_back(key, std::move(value));
}

void Json::push(Json value) { as_array().push_back(std::move(value)); }

void Json::dump_to(std::string& out, int indent, int depth) const {
  const std::string pad(size_t(indent) * size_t(depth + 1), ' ');
  const std::string close_pad(size_t(indent) * size_t(depth), ' ');
  switch (kind_) {
    case Kind::null: out += "null"; return;
    case Kind::boolean: out += bool_ ? "true" : "false"; return;
    case Kind::number: {
      if (!std::isfinite(num_)) { out += "null"; return; }
      char buf[32];
      // Shortest text that reads back to the same double.
      const auto res = std::to_chars(buf, buf + sizeof buf, num_);
      out.append(buf, res.ptr);
      return;
    }
    case Kind::string: dump_string(out, str_); return;
    case Kind::array: {
      if (arr_->empty()) { out += "[]"; return; }
      out += "[\n";
      for (size_t i = 0; i < arr_->size(); ++i) {
        out += pad;
        (*arr_)[i].dump_to(out, indent, depth + 1);
        out += i + 1 < arr_->size() ? ",\n" : "\n";
      }
      out += close_pad + "]";
      return;
    }
    case Kind::object: {
      if (obj_->empty()) { out += "{}"; return; }
      out += "{\n";
      for (size_t i = 0; i < obj_->size(); ++i) {
        out += pad;
        dump_string(out, (*obj_)[i].first);
        out += ": ";
        (*obj_)[i].second.dump_to(out, indent, depth + 1);
        out += i + 1 < obj_->size() ? ",\n" : "\n";
      }
      out += close_pad + "}";
      return;
    }
  }
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  out += '\n';
  return out;
}

Json Json::parse(const std::string& text) { return Parser(text).document(); }

Json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw JsonError("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  try {
    return Json::parse(ss.str());
  } catch (const JsonError& e) {
    throw JsonError(path + ": " + e.what());
  }
}

void write_json_file(const std::string& path, const Json& value) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw JsonError("cannot write " + path);
  out << value.dump();
  if (!out) throw JsonError("cannot write " + path);
}

}  // namespace flashmfa::bench
