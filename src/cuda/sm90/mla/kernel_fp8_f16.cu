// flashmfa CUDA, Hopper path: the f16 instance of the MLA decode kernel on FP8 caches (fp8_mla).
#include "cuda/sm90/mla/kernel.cuh"

namespace flashmfa::cuda::sm90 {
template void launch_mla_fp8_typed<__half>(const detail::DecodeParams&, const Schedule&,
                                        const CUtensorMap&, const CUtensorMap&,
                                        const CUtensorMap&, cudaStream_t);
}  // namespace flashmfa::cuda::sm90
