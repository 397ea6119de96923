// Host helpers of common.cuh.
#include "cuda/common.cuh"

namespace modulora {
namespace cuda {

Layout MakeLayout(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides, const char* op) {
  if (shape.size() > static_cast<size_t>(kMaxRank)) {
    throw CudaError(std::string(op) + ": rank " + std::to_string(shape.size()) + " is above the CUDA kernels' limit of " +
                    std::to_string(kMaxRank) + " dims; reshape the tensor first");
  }
  if (strides.size() != shape.size()) {
    throw CudaError(std::string(op) + ": " + std::to_string(strides.size()) + " strides for a rank-" +
                    std::to_string(shape.size()) + " shape");
  }
  Layout l{};
  l.rank = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); i++) {
    l.shape[i] = shape[i];
    l.strides[i] = strides[i];
  }
  return l;
}

}  // namespace cuda
}  // namespace modulora
