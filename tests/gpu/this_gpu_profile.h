// The device profile the GPU tests plan for: this GPU's shipped profile, or the H200
// profile renamed and resized to it (what a probed profile would say about identity and
// memory; rates do not matter to the tests). `gpus` > 1 makes it a host of that many.
#pragma once
#include <cstdint>

#include "planner/profile/probed_profile.h"

namespace fp::test {

ProbedGpu this_gpu();  // CUDA device 0: name, compute capability, SMs, total and free bytes
DeviceProfile profile_for_this_gpu(uint32_t gpus = 1);

}  // namespace fp::test
