// Bad input: every violated precondition raises flashmfa::Error with the right status and a
// message naming the argument, the expected and the actual value, and writes nothing.
//
// Each case starts from a valid problem (make_problem: NaN in unused rows, sentinel page ids),
// breaks one thing, and goes through every entry point that validates: workspace_size, the
// one-call decode (plan + run: the fast CPU path) and decode_reference. The outputs were
// poisoned (NaN) by make_problem and must still be NaN afterwards.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "flashmfa/flashmfa.hpp"
#include "problem/problem.hpp"

namespace flashmfa {
namespace {

using testing::HostProblem;
using testing::ProblemSpec;

// A valid base problem: GQA with a separate V cache so that v_cache cases exist.
//   q [2, 2, 4, 256], k/v [7, 16, 2, 256], block_table [2, 4], lens {20, 33}, out [2, 2, 4, 256]
ProblemSpec base_spec(Variant v = Variant::mfa()) {
  ProblemSpec s;
  s.variant = v;
  s.dtype = DType::bf16;
  s.b = 2, s.s_q = 2, s.h_q = 4, s.h_kv = 2, s.page_size = 16;
  s.seqlens = {20, 33};
  s.seed = 7;
  return s;
}

bool outputs_poisoned(const HostProblem& p) {
  const uint16_t nan = testing::nan_bits(p.spec.dtype);
  for (uint16_t x : p.out)
    if (x != nan) return false;
  for (float x : p.lse)
    if (!std::isnan(x)) return false;
  return true;
}

// Runs `call`, which must throw flashmfa::Error with `status` and every string of `parts` in
// its message.
void expect_error(const char* entry, const std::function<void()>& call, Status status,
                  const std::vector<std::string>& parts) {
  SCOPED_TRACE(entry);
  try {
    call();
    ADD_FAILURE() << "no error raised";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.status(), status) << "status " << status_name(e.status()) << ", expected "
                                  << status_name(status) << ": " << msg;
    for (const std::string& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos) << "message lacks \"" << part << "\": " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a flashmfa::Error: " << e.what();
  }
}

// One bad-input case: how to break the base problem and what the error must say.
struct BadCase {
  const char* name;
  Variant variant;
  std::function<void(HostProblem&, DecodeArgs&)> corrupt;
  Status status;
  std::vector<std::string> parts;
  bool at_run = false;  // refused by the host index check (plan succeeds), not by validation
};

class BadInput : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadInput, RaisesNamedErrorAndWritesNothing) {
  const BadCase& c = GetParam();
  HostProblem p = testing::make_problem(base_spec(c.variant));
  DecodeArgs a = p.args();
  c.corrupt(p, a);
  if (!c.at_run)
    expect_error("workspace_size", [&] { (void)workspace_size(a); }, c.status, c.parts);
  expect_error("decode (plan + run)", [&] { decode(a, nullptr, 0); }, c.status, c.parts);
  expect_error("decode_reference", [&] { decode_reference(a); }, c.status, c.parts);
  EXPECT_TRUE(outputs_poisoned(p)) << "a refused call wrote to out or lse";
}

using P = HostProblem;
using A = DecodeArgs;
const Variant kMfa = Variant::mfa(), kMla = Variant::mla(), kKr128 = Variant::mfa_kr(128);
const Variant kMqa128 = Variant::mqa(128);
constexpr Status kArg = Status::invalid_argument, kDtype = Status::invalid_dtype;

// Drops the last dimension of a view (rank 3 where 4 is expected, and so on).
void drop_dim(TensorView& t) { --t.ndim; }

const BadCase kCases[] = {
    // ---- dtypes ----
    {"QDtype", kMfa, [](P&, A& a) { a.q.dtype = DType::f32; }, kDtype,
     {"q.dtype", "expected bf16 or f16", "got f32"}},
    {"KCacheDtype", kMfa, [](P&, A& a) { a.k_cache.dtype = DType::f16; }, kDtype,
     {"k_cache.dtype", "expected bf16 (q's dtype) or f8_e4m3", "got f16"}},
    {"VCacheDtype", kMfa, [](P&, A& a) { a.v_cache.dtype = DType::f16; }, kDtype,
     {"v_cache.dtype", "expected bf16", "got f16"}},
    {"OutDtype", kMfa, [](P&, A& a) { a.out.dtype = DType::f16; }, kDtype,
     {"out.dtype", "expected bf16", "got f16"}},
    {"LseDtype", kMfa, [](P&, A& a) { a.lse.dtype = DType::i32; }, kDtype,
     {"lse.dtype", "expected f32", "got i32"}},
    {"BlockTableDtype", kMfa, [](P&, A& a) { a.block_table.dtype = DType::f32; }, kDtype,
     {"block_table.dtype", "expected i32", "got f32"}},
    {"SeqlensDtype", kMfa, [](P&, A& a) { a.seqlens_k.dtype = DType::u8; }, kDtype,
     {"seqlens_k.dtype", "expected i32", "got u8"}},
    // ---- ranks ----
    {"QRank", kMfa, [](P&, A& a) { drop_dim(a.q); }, kArg,
     {"q: expected 4 dimensions [b, s_q, h_q, d_k]", "got 3 dimensions [2, 2, 4]"}},
    {"KCacheRank", kMfa, [](P&, A& a) { drop_dim(a.k_cache); }, kArg,
     {"k_cache: expected 4 dimensions [num_pages, page_size, h_kv, d_k]", "got 3 dimensions"}},
    {"VCacheRank", kMfa, [](P&, A& a) { drop_dim(a.v_cache); }, kArg,
     {"v_cache: expected 4 dimensions [num_pages, page_size, h_kv, d_v]", "got 3 dimensions"}},
    {"BlockTableRank", kMfa, [](P&, A& a) { drop_dim(a.block_table); }, kArg,
     {"block_table: expected 2 dimensions [b, max_pages_per_seq]", "got 1 dimensions [2]"}},
    {"SeqlensRank", kMfa,
     [](P&, A& a) {
       a.seqlens_k.ndim = 2;
       a.seqlens_k.shape[1] = 1;
       a.seqlens_k.strides[1] = 1;
     },
     kArg, {"seqlens_k: expected 1 dimensions [b]", "got 2 dimensions [2, 1]"}},
    {"OutRank", kMfa, [](P&, A& a) { drop_dim(a.out); }, kArg,
     {"out: expected 4 dimensions [b, s_q, h_q, d_v]", "got 3 dimensions [2, 2, 4]"}},
    {"LseRank", kMfa, [](P&, A& a) { drop_dim(a.lse); }, kArg,
     {"lse: expected 3 dimensions [b, h_q, s_q]", "got 2 dimensions [2, 4]"}},
    {"NegativeSize", kMfa, [](P&, A& a) { a.q.shape[0] = -1; }, kArg,
     {"q: expected non-negative sizes", "got [-1, 2, 4, 256]"}},
    // ---- shapes ----
    {"QSeqZero", kMfa, [](P&, A& a) { a.q.shape[1] = 0; }, kArg,
     {"q.shape[1] (s_q)", "expected >= 1", "got 0"}},
    {"KCacheHeadDim", kMfa, [](P&, A& a) { a.k_cache.shape[3] = 128; }, kArg,
     {"k_cache.shape[3] (d_k)", "expected 256", "got 128 in [7, 16, 2, 128]"}},
    {"VCacheNumPages", kMfa, [](P&, A& a) { a.v_cache.shape[0] = 6; }, kArg,
     {"v_cache.shape[0] (num_pages)", "expected 7", "got 6"}},
    {"VCachePageSize", kMfa, [](P&, A& a) { a.v_cache.shape[1] = 8; }, kArg,
     {"v_cache.shape[1] (page_size)", "expected 16", "got 8"}},
    {"VCacheHeads", kMfa, [](P&, A& a) { a.v_cache.shape[2] = 1; }, kArg,
     {"v_cache.shape[2] (h_kv)", "expected 2", "got 1"}},
    {"VCacheHeadDim", kMfa, [](P&, A& a) { a.v_cache.shape[3] = 128; }, kArg,
     {"v_cache.shape[3] (d_v)", "expected 256", "got 128"}},
    {"OutBatch", kMfa, [](P&, A& a) { a.out.shape[0] = 1; }, kArg,
     {"out.shape[0] (b)", "expected 2", "got 1"}},
    {"OutSeq", kMfa, [](P&, A& a) { a.out.shape[1] = 1; }, kArg,
     {"out.shape[1] (s_q)", "expected 2", "got 1"}},
    {"OutHeads", kMfa, [](P&, A& a) { a.out.shape[2] = 2; }, kArg,
     {"out.shape[2] (h_q)", "expected 4", "got 2"}},
    {"LseBatch", kMfa, [](P&, A& a) { a.lse.shape[0] = 1; }, kArg,
     {"lse.shape[0] (b)", "expected 2", "got 1"}},
    {"LseHeads", kMfa, [](P&, A& a) { a.lse.shape[1] = 2; }, kArg,
     {"lse.shape[1] (h_q)", "expected 4", "got 2"}},
    {"LseSeq", kMfa, [](P&, A& a) { a.lse.shape[2] = 1; }, kArg,
     {"lse.shape[2] (s_q)", "expected 2", "got 1"}},
    {"BlockTableBatch", kMfa, [](P&, A& a) { a.block_table.shape[0] = 1; }, kArg,
     {"block_table.shape[0] (b)", "expected 2", "got 1"}},
    {"SeqlensBatch", kMfa, [](P&, A& a) { a.seqlens_k.shape[0] = 1; }, kArg,
     {"seqlens_k.shape[0] (b)", "expected 2", "got 1"}},
    // ---- layout ----
    {"QLastDimStrided", kMfa, [](P&, A& a) { a.q.strides[3] = 2; }, kArg,
     {"q.strides[3]", "expected 1 (contiguous last dimension)", "got 2"}},
    {"KCacheLastDimStrided", kMfa, [](P&, A& a) { a.k_cache.strides[3] = 2; }, kArg,
     {"k_cache.strides[3]", "expected 1 (contiguous last dimension)", "got 2"}},
    {"VCacheLastDimStrided", kMfa, [](P&, A& a) { a.v_cache.strides[3] = 2; }, kArg,
     {"v_cache.strides[3]", "expected 1", "got 2"}},
    {"BlockTableLastDimStrided", kMfa, [](P&, A& a) { a.block_table.strides[1] = 2; }, kArg,
     {"block_table.strides[1]", "expected 1", "got 2"}},
    {"SeqlensStrided", kMfa, [](P&, A& a) { a.seqlens_k.strides[0] = 2; }, kArg,
     {"seqlens_k.strides[0]", "expected 1", "got 2"}},
    {"OutLastDimStrided", kMfa, [](P&, A& a) { a.out.strides[3] = 2; }, kArg,
     {"out.strides[3]", "expected 1", "got 2"}},
    {"LseLastDimStrided", kMfa, [](P&, A& a) { a.lse.strides[2] = 2; }, kArg,
     {"lse.strides[2]", "expected 1", "got 2"}},
    {"NegativeStride", kMfa, [](P&, A& a) { a.q.strides[0] = -1; }, kArg,
     {"q: expected non-negative strides", "got stride -1 in dimension 0"}},
    // ---- heads and head dims ----
    {"HqNotMultipleOfHkv", kMfa, [](P&, A& a) { a.q.shape[2] = 3; }, kArg,
     {"q.shape[2] (h_q)", "expected a multiple of h_kv = 2", "got 3"}},
    {"HkvNotDividingHq", kMfa, [](P&, A& a) { a.k_cache.shape[2] = 3; }, kArg,
     {"q.shape[2] (h_q)", "expected a multiple of h_kv = 3", "got 4"}},
    {"UnsupportedHeadDims", kMqa128,
     [](P&, A& a) {  // (96, 96): views shrunk to 96 columns of the 128-wide buffers
       a.q.shape[3] = a.k_cache.shape[3] = a.v_cache.shape[3] = a.out.shape[3] = 96;
     },
     Status::unsupported,
     {"(d_k, d_v, V aliases K)", "expected one of (576, 512, V aliases K)",
      "got (96, 96, separate V)"}},
    {"UnsupportedDvForDk", kMfa,
     [](P&, A& a) { a.v_cache.shape[3] = a.out.shape[3] = 128; }, Status::unsupported,
     {"(d_k, d_v, V aliases K)", "(256, 256, separate V)", "got (256, 128, separate V)"}},
    {"MlaWithOtherDv", kMla, [](P&, A& a) { a.out.shape[3] = 256; }, Status::unsupported,
     {"(d_k, d_v, V aliases K)", "got (576, 256, V aliases K)"}},
    {"DvAboveDkWhenVAliasesK", kKr128,
     [](P& p, A& a) {  // out 256 wide over a buffer that holds it; no v_cache
       p.out.assign(p.out.size() * 2, testing::nan_bits(p.spec.dtype));
       a.out = make_view(p.out.data(), p.spec.dtype, {2, 2, 4, 256});
     },
     kArg, {"out.shape[3] (d_v)", "expected <= d_k = 128 when V aliases K", "got 256"}},
    // ---- page size ----
    {"PageSize0", kMfa, [](P&, A& a) { a.k_cache.shape[1] = 0; }, kArg,
     {"k_cache.shape[1] (page_size)", "expected a power of two in [1, 256]", "got 0"}},
    {"PageSize3", kMfa, [](P&, A& a) { a.k_cache.shape[1] = 3; }, kArg,
     {"k_cache.shape[1] (page_size)", "expected a power of two in [1, 256]", "got 3"}},
    {"PageSize512", kMfa, [](P&, A& a) { a.k_cache.shape[1] = 512; }, kArg,
     {"k_cache.shape[1] (page_size)", "expected a power of two in [1, 256]", "got 512"}},
    // ---- lengths and block table (values: checked by the CPU path before it writes) ----
    {"NegativeLength", kMfa, [](P& p, A&) { p.seqlens[1] = -1; }, Status::bad_seqlen,
     {"seqlens_k[1]", "expected >= 0", "got -1"}, true},
    {"LengthBeyondBlockTable", kMfa, [](P& p, A&) { p.seqlens[0] = 4 * 16 + 1; },
     Status::bad_seqlen,
     {"seqlens_k[0]", "expected <= max_pages_per_seq * page_size = 64", "got 65"}, true},
    {"PageIndexTooLarge", kMfa, [](P& p, A&) { p.block_table[1 * 4 + 2] = 7; },
     Status::bad_page_index, {"block_table[1, 2]", "expected a page index in [0, 7)", "got 7"},
     true},
    {"PageIndexNegative", kMfa, [](P& p, A&) { p.block_table[0] = -1; },
     Status::bad_page_index, {"block_table[0, 0]", "expected a page index in [0, 7)", "got -1"},
     true},
    // ---- null data pointers ----
    {"NullQ", kMfa, [](P&, A& a) { a.q.data = nullptr; }, kArg,
     {"q: expected a non-null data pointer", "got nullptr"}},
    {"NullKCache", kMfa, [](P&, A& a) { a.k_cache.data = nullptr; }, kArg,
     {"k_cache: expected a non-null data pointer", "got nullptr"}},
    {"NullVCache", kMfa, [](P&, A& a) { a.v_cache.data = nullptr; }, kArg,
     {"v_cache: expected a non-null data pointer", "got nullptr"}},
    {"NullBlockTable", kMfa, [](P&, A& a) { a.block_table.data = nullptr; }, kArg,
     {"block_table: expected a non-null data pointer", "got nullptr"}},
    {"NullSeqlens", kMfa, [](P&, A& a) { a.seqlens_k.data = nullptr; }, kArg,
     {"seqlens_k: expected a non-null data pointer", "got nullptr"}},
    {"NullOut", kMfa, [](P&, A& a) { a.out.data = nullptr; }, kArg,
     {"out: expected a non-null data pointer", "got nullptr"}},
    {"NullLse", kMfa, [](P&, A& a) { a.lse.data = nullptr; }, kArg,
     {"lse: expected a non-null data pointer", "got nullptr"}},
    // ---- overlapping memory (out and lse stay pointed at their poisoned buffers' siblings) ----
    {"OutOverlapsQ", kMfa, [](P&, A& a) { a.out.data = a.q.data; }, kArg,
     {"out: expected memory disjoint from q", "got overlapping memory"}},
    {"OutOverlapsKCache", kMfa,
     [](P&, A& a) { a.out.data = static_cast<uint16_t*>(a.k_cache.data) + 100; }, kArg,
     {"out: expected memory disjoint from k_cache", "got overlapping memory"}},
    {"OutOverlapsVCache", kMfa, [](P&, A& a) { a.out.data = a.v_cache.data; }, kArg,
     {"out: expected memory disjoint from v_cache", "got overlapping memory"}},
    {"LseOverlapsBlockTable", kMfa, [](P&, A& a) { a.lse.data = a.block_table.data; }, kArg,
     {"lse: expected memory disjoint from block_table", "got overlapping memory"}},
    {"LseOverlapsSeqlens", kMfa, [](P&, A& a) { a.lse.data = a.seqlens_k.data; }, kArg,
     {"lse: expected memory disjoint from seqlens_k", "got overlapping memory"}},
    {"OutOverlapsKWhenVAliasesK", kMla, [](P&, A& a) { a.out.data = a.k_cache.data; }, kArg,
     {"out: expected memory disjoint from k_cache"}},
    {"LseOverlapsOut", kMfa,
     [](P&, A& a) { a.lse.data = static_cast<uint16_t*>(a.out.data) + 8; }, kArg,
     {"lse: expected memory disjoint from out", "got overlapping memory"}},
    // ---- outputs whose elements share addresses (threads would race on them) ----
    {"OutZeroStride", kMfa, [](P&, A& a) { a.out.strides[2] = 0; }, kArg,
     {"out.strides[2]", "expected >= 1 (every output element at its own address)", "got 0"}},
    {"LseInterleavedStrides", kMfa, [](P&, A& a) { a.lse.strides[1] = 1; }, kArg,
     {"lse.strides[2]", "expected >= 4", "got 1"}},
    // ---- sizes that do not fit the kernels' 32-bit indices ----
    {"HeadDimBeyondInt32", kMfa,
     [](P&, A& a) { a.q.shape[3] = a.k_cache.shape[3] = (int64_t(1) << 32) + 256; }, kArg,
     {"q.shape[3] (d_k)", "expected a value below 2^31", "got 4294967552"}},
    // ---- devices and scale ----
    {"MixedDevices", kMfa, [](P&, A& a) { a.k_cache.device = {DeviceType::cuda, 0}; }, kArg,
     {"k_cache.device", "expected cpu (q's device)", "got cuda:0"}},
    {"ScaleZero", kMfa, [](P&, A& a) { a.softmax_scale = 0.0f; }, kArg,
     {"softmax_scale", "expected a finite value > 0", "got 0"}},
    {"ScaleNegative", kMfa, [](P&, A& a) { a.softmax_scale = -0.5f; }, kArg,
     {"softmax_scale", "expected a finite value > 0", "got -0.5"}},
    {"ScaleNaN", kMfa,
     [](P&, A& a) { a.softmax_scale = std::numeric_limits<float>::quiet_NaN(); }, kArg,
     {"softmax_scale", "expected a finite value > 0", "got nan"}},
    {"ScaleInf", kMfa,
     [](P&, A& a) { a.softmax_scale = std::numeric_limits<float>::infinity(); }, kArg,
     {"softmax_scale", "expected a finite value > 0", "got inf"}},
};

INSTANTIATE_TEST_SUITE_P(Validate, BadInput, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<BadCase>& info) {
                           return std::string(info.param.name);
                         });

// ---- Cases that need more than a corrupted argument ----

TEST(Validate, PlanUsedWithOtherShapes) {
  HostProblem p = testing::make_problem(base_spec());
  DecodeArgs a = p.args();
  const Plan plan_for_a = plan(a, nullptr, 0);
  const auto other = [&](auto change) {
    DecodeArgs b = a;
    change(b);
    expect_error("run", [&] { run(plan_for_a, b); }, Status::invalid_argument,
                 {"plan: expected a plan made for these shapes", "got a plan made for other shapes"});
  };
  other([](DecodeArgs& b) { b.causal = true; });
  other([](DecodeArgs& b) { b.q.shape[1] = b.out.shape[1] = b.lse.shape[2] = 1; });  // s_q
  other([](DecodeArgs& b) { b.block_table.shape[1] = 3; });                          // max pages
  EXPECT_TRUE(outputs_poisoned(p));
  // The plan itself still works with the shapes it was made for.
  EXPECT_NO_THROW(run(plan_for_a, a));
  EXPECT_FALSE(outputs_poisoned(p));
}

TEST(Validate, PlanStaysValidForNewLengths) {
  // Lengths are not part of a plan's key: a plan made for one set serves another.
  HostProblem p = testing::make_problem(base_spec());
  const Plan pl = plan(p.args(), nullptr, 0);
  p.seqlens = {33, 5};  // the block table holds 4 pages of 16 for both
  p.block_table[0 * 4 + 2] = p.block_table[1 * 4 + 2];  // sequence 0 now needs a third page
  EXPECT_NO_THROW(run(pl, p.args()));
}

TEST(Validate, CpuWorkspaceIsZero) {
  // On CPU tensors workspace_size is 0, so "workspace too small" cannot happen there; plan
  // accepts a null workspace of 0 bytes (its CUDA counterpart is below).
  HostProblem p = testing::make_problem(base_spec());
  DecodeArgs a = p.args();
  EXPECT_EQ(workspace_size(a), 0u);
  EXPECT_NO_THROW((void)plan(a, nullptr, 0));
}

TEST(Validate, WorkspaceTooSmall) {
  if (!cuda_available())
    GTEST_SKIP() << "needs a CUDA device: on CPU tensors workspace_size is 0, so the check "
                    "cannot fire (see Validate.CpuWorkspaceIsZero)";
  // CUDA views over host memory: the refusal happens on the host before any device work, so
  // the pointers are never dereferenced.
  HostProblem p = testing::make_problem(base_spec());
  DecodeArgs a = p.args();
  for (TensorView* t : {&a.q, &a.k_cache, &a.v_cache, &a.block_table, &a.seqlens_k, &a.out, &a.lse})
    t->device = {DeviceType::cuda, 0};
  const size_t need = workspace_size(a);
  if (need == 0) GTEST_SKIP() << "this CUDA plan needs no workspace";
  std::vector<char> ws(need);
  expect_error("plan", [&] { (void)plan(a, ws.data(), need - 1); }, Status::invalid_argument,
               {"workspace_bytes", "expected >= " + std::to_string(need), std::to_string(need - 1)});
  expect_error("plan", [&] { (void)plan(a, nullptr, need); }, Status::invalid_argument,
               {"workspace: expected a non-null pointer", "got nullptr"});
}

TEST(Validate, CudaTensorsWithoutCuda) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  HostProblem p = testing::make_problem(base_spec());
  DecodeArgs a = p.args();
  for (TensorView* t : {&a.q, &a.k_cache, &a.v_cache, &a.block_table, &a.seqlens_k, &a.out, &a.lse})
    t->device = {DeviceType::cuda, 0};
  expect_error("workspace_size", [&] { (void)workspace_size(a); }, Status::no_device,
               {"q.device", "expected a device this build can drive", "cuda:0"});
  expect_error("decode", [&] { decode(a, nullptr, 0); }, Status::no_device, {"q.device"});
  expect_error("decode_reference", [&] { decode_reference(a); }, Status::invalid_argument,
               {"q.device", "expected cpu (the reference runs on the host)", "cuda:0"});
  EXPECT_TRUE(outputs_poisoned(p));
}

TEST(Validate, ErrorMessageFormat) {
  // fail_arg's one format: "flashmfa: <arg>: expected <expected>, got <actual> (<why>)".
  try {
    detail::fail_arg(Status::bad_seqlen, "seqlens_k[3]", ">= 0", -2, "a length");
    FAIL() << "fail_arg returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::bad_seqlen);
    EXPECT_STREQ(e.what(), "flashmfa: seqlens_k[3]: expected >= 0, got -2 (a length)");
  }
}

}  // namespace
}  // namespace flashmfa
