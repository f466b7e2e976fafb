// A program that knows flashmfa only through its installed package: one MFA-KR decode of a
// single 3-token sequence on the CPU, checked against the reference.
#include <flashmfa/flashmfa.hpp>
#include <flashmfa/half.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  using namespace flashmfa;
  constexpr int d = 64, page = 4, tokens = 3;
  std::vector<uint16_t> q(d), k(page * d), out(d), ref_out(d);
  for (int i = 0; i < d; ++i) q[i] = half::float_to_bf16(std::sin(0.1f * i));
  for (int i = 0; i < page * d; ++i) k[i] = half::float_to_bf16(std::cos(0.07f * i));
  std::vector<int32_t> table = {0}, lens = {tokens};
  float lse = 0, ref_lse = 0;
  DecodeArgs a;
  a.q = make_view(q.data(), DType::bf16, {1, 1, 1, d});
  a.k_cache = make_view(k.data(), DType::bf16, {1, page, 1, d});
  a.block_table = make_view(table.data(), DType::i32, {1, 1});
  a.seqlens_k = make_view(lens.data(), DType::i32, {1});
  a.out = make_view(out.data(), DType::bf16, {1, 1, 1, d});
  a.lse = make_view(&lse, DType::f32, {1, 1, 1});
  decode(a, nullptr, workspace_size(a));
  DecodeArgs r = a;
  r.out = make_view(ref_out.data(), DType::bf16, {1, 1, 1, d});
  r.lse = make_view(&ref_lse, DType::f32, {1, 1, 1});
  decode_reference(r);
  const bool ok = std::fabs(lse - ref_lse) < 1e-4f && out == ref_out;
  std::printf("%s: lse %.6f (reference %.6f)\n", build_info().c_str(), lse, ref_lse);
  return ok ? 0 : 1;
}
