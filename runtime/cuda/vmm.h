// Memory that holds weights on a GPU: one CUDA VMM mapping per tensor (cuMemCreate ->
// cuMemAddressReserve -> cuMemMap -> cuMemSetAccess), and pinned host memory mapped
// into the device's address space for tensors the plan places on the host.
//
// Why one mapping per tensor: each tensor gets its own 2 MiB-aligned base (which roughly
// doubled prefill in the seed against packing everything in one region), its size is
// rounded to the allocation granularity only, and the mapping can later be exported to
// another process (the weight server). CUDA-free header: pointers are plain void*.
#pragma once
#include <cstdint>
#include <string>

namespace fp::cuda {

inline constexpr uint64_t kVmmAlignment = 2ull << 20;  // base alignment of every mapping

// Allocation granularity of device memory on `device` (typically 2 MiB).
uint64_t vmm_granularity(int device);

// Free and total device memory of `device`, in bytes.
void device_memory(int device, uint64_t& free_bytes, uint64_t& total_bytes);

class VmmMapping {
 public:
  // Maps `bytes` (rounded up to the granularity) on `device`. Out of memory, or any other
  // failure, throws fp::Error naming `what` (the tensor) with the free and needed bytes.
  static VmmMapping create(int device, uint64_t bytes, const std::string& what);

  VmmMapping() = default;
  VmmMapping(VmmMapping&& o) noexcept;
  VmmMapping& operator=(VmmMapping&& o) noexcept;
  VmmMapping(const VmmMapping&) = delete;
  VmmMapping& operator=(const VmmMapping&) = delete;
  ~VmmMapping();  // unmap, release the physical memory, free the address range

  void* ptr() const { return reinterpret_cast<void*>(va_); }
  uint64_t bytes() const { return bytes_; }    // as requested
  uint64_t mapped() const { return mapped_; }  // rounded to the granularity
  int device() const { return device_; }

 private:
  void release() noexcept;
  uint64_t va_ = 0;                   // CUdeviceptr
  unsigned long long handle_ = 0;     // CUmemGenericAllocationHandle
  uint64_t bytes_ = 0, mapped_ = 0;
  int device_ = -1;
};

class PinnedHost {
 public:
  // Page-locked host memory, portable and mapped: dev_ptr() reads it over the bus.
  static PinnedHost create(uint64_t bytes, const std::string& what);

  PinnedHost() = default;
  PinnedHost(PinnedHost&& o) noexcept;
  PinnedHost& operator=(PinnedHost&& o) noexcept;
  PinnedHost(const PinnedHost&) = delete;
  PinnedHost& operator=(const PinnedHost&) = delete;
  ~PinnedHost();

  void* host() const { return host_; }
  void* dev_ptr() const { return dev_; }
  uint64_t bytes() const { return bytes_; }

 private:
  void release() noexcept;
  void* host_ = nullptr;
  void* dev_ = nullptr;
  uint64_t bytes_ = 0;
};

}  // namespace fp::cuda
