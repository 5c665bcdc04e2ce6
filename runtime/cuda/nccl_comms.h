// NCCL communicators over the GPUs of a multi-GPU plan, one process driving them all
// (runtime/cuda/MULTI_GPU.md). ncclCommInitAll over the plan's devices in order, so
// rank = the device's index in the plan = Node.device; no unique-id exchange, no sockets.
//
// NVLink multicast (NVLS) stays off: the constructor sets NCCL_NVLS_ENABLE=0 when the
// variable is unset, before NCCL first reads its environment (the lent machines require
// it: a program using multicast can put a shared host's GPUs out of service), and nothing
// here calls cuMulticastCreate. A value the user set is kept.
//
// Each rank's collectives are issued by the host thread that drives that rank's device
// (one thread per device: NCCL needs every rank's call issued before any of them can
// finish, which one thread walking the devices in turn would not give without grouping
// each call across the executors), on that device's stream, eagerly or inside the
// stream's graph capture (NCCL kernels are capturable).
//
// NCCL is opened at run time (libnccl.so.2 on the loader's path, else the library CMake
// found), not linked: binaries start without it, and the first multi-GPU plan says why it
// cannot run. A build without nccl.h (FLASHPLAN_NCCL=OFF, or none found) has the same
// interface and refuses at construction. CUDA-free header.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace fp::cuda {

class Comms {
 public:
  // One communicator per entry of `devices` (CUDA device ordinals), rank i on devices[i].
  explicit Comms(const std::vector<int>& devices);
  ~Comms();
  Comms(const Comms&) = delete;
  Comms& operator=(const Comms&) = delete;

  static bool available();         // NCCL can be opened
  static std::string version();    // "2.28.9", or why there is none
  int size() const { return int(comms_.size()); }

  // In-place sum over every rank of `count` floats at `buf` (rank's device memory), on
  // `stream` (a cudaStream_t of rank's device). Call from the thread driving that rank.
  void all_reduce_sum(int rank, float* buf, size_t count, void* stream) const;

 private:
  std::vector<int> devices_;
  std::vector<void*> comms_;  // ncclComm_t
};

}  // namespace fp::cuda
