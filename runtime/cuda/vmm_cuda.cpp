// VMM mappings and mapped pinned host memory (vmm.h), on the CUDA driver API. Every step
// that can fail undoes the steps before it, so a failed mapping leaks nothing; the error
// names the tensor and says how much memory was free and how much was needed.
//
// The driver functions come from cudaGetDriverEntryPointByVersion rather than from linking
// libcuda: a binary then starts on a machine without the driver (CI), where the runtime
// reports "no device" and the GPU tests can say "not run".
#include "runtime/cuda/vmm.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include <utility>

#include "ops/core/error.h"

namespace fp::cuda {
namespace {

// The driver entry points this file uses, looked up once through the runtime.
struct Driver {
  decltype(&::cuGetErrorName) GetErrorName = nullptr;
  decltype(&::cuGetErrorString) GetErrorString = nullptr;
  decltype(&::cuMemGetAllocationGranularity) MemGetAllocationGranularity = nullptr;
  decltype(&::cuMemCreate) MemCreate = nullptr;
  decltype(&::cuMemRelease) MemRelease = nullptr;
  decltype(&::cuMemAddressReserve) MemAddressReserve = nullptr;
  decltype(&::cuMemAddressFree) MemAddressFree = nullptr;
  decltype(&::cuMemMap) MemMap = nullptr;
  decltype(&::cuMemUnmap) MemUnmap = nullptr;
  decltype(&::cuMemSetAccess) MemSetAccess = nullptr;
};

template <typename F>
void entry(F& fn, const char* name) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  if (cudaGetDriverEntryPointByVersion(name, &p, CUDA_VERSION, cudaEnableDefault, &q) != cudaSuccess ||
      q != cudaDriverEntryPointSuccess || !p) {
    cudaGetLastError();
    fail("CUDA driver: no entry point ", name, " (driver too old, or no driver)");
  }
  fn = reinterpret_cast<F>(p);
}

const Driver& drv() {
  static const Driver d = [] {
    Driver r;
    entry(r.GetErrorName, "cuGetErrorName");
    entry(r.GetErrorString, "cuGetErrorString");
    entry(r.MemGetAllocationGranularity, "cuMemGetAllocationGranularity");
    entry(r.MemCreate, "cuMemCreate");
    entry(r.MemRelease, "cuMemRelease");
    entry(r.MemAddressReserve, "cuMemAddressReserve");
    entry(r.MemAddressFree, "cuMemAddressFree");
    entry(r.MemMap, "cuMemMap");
    entry(r.MemUnmap, "cuMemUnmap");
    entry(r.MemSetAccess, "cuMemSetAccess");
    return r;
  }();
  return d;
}

std::string cu_error(CUresult r) {
  const char* name = nullptr;
  const char* text = nullptr;
  drv().GetErrorName(r, &name);
  drv().GetErrorString(r, &text);
  return str(name ? name : "CUDA_ERROR_?", " (", text ? text : "no description", ")");
}

// Makes `device`'s primary context current on this thread (the runtime creates it).
void use_device(int device) {
  if (cudaSetDevice(device) != cudaSuccess) fail("cannot use CUDA device ", device);
  if (cudaFree(nullptr) != cudaSuccess) fail("cannot initialise CUDA device ", device);
}

CUmemAllocationProp device_prop(int device) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  return prop;
}

std::string gib(uint64_t b) { return str(b, " bytes (", double(b) / double(1ull << 30), " GiB)"); }

}  // namespace

uint64_t vmm_granularity(int device) {
  use_device(device);
  const CUmemAllocationProp prop = device_prop(device);
  size_t g = 0;
  const CUresult r = drv().MemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
  if (r != CUDA_SUCCESS || g == 0) fail("device ", device, ": cannot read the VMM granularity: ", cu_error(r));
  return g;
}

void device_memory(int device, uint64_t& free_bytes, uint64_t& total_bytes) {
  use_device(device);
  size_t f = 0, t = 0;
  if (cudaMemGetInfo(&f, &t) != cudaSuccess) fail("device ", device, ": cannot read free memory");
  free_bytes = f;
  total_bytes = t;
}

VmmMapping VmmMapping::create(int device, uint64_t bytes, const std::string& what) {
  const uint64_t gran = vmm_granularity(device);
  const uint64_t size = (bytes == 0 ? gran : (bytes + gran - 1) / gran * gran);
  const CUmemAllocationProp prop = device_prop(device);
  VmmMapping m;
  m.device_ = device;
  m.bytes_ = bytes;
  CUmemGenericAllocationHandle h = 0;
  CUresult r = drv().MemCreate(&h, size, &prop, 0);
  if (r != CUDA_SUCCESS) {
    uint64_t f = 0, t = 0;
    device_memory(device, f, t);
    fail(what, ": cannot allocate ", gib(size), " on CUDA device ", device, ": ", cu_error(r), "; free ", gib(f),
         " of ", gib(t));
  }
  m.handle_ = h;
  CUdeviceptr va = 0;
  r = drv().MemAddressReserve(&va, size, kVmmAlignment > gran ? kVmmAlignment : gran, 0, 0);
  if (r != CUDA_SUCCESS) {
    drv().MemRelease(h);
    fail(what, ": cannot reserve ", gib(size), " of device address space: ", cu_error(r));
  }
  r = drv().MemMap(va, size, 0, h, 0);
  if (r != CUDA_SUCCESS) {
    drv().MemAddressFree(va, size);
    drv().MemRelease(h);
    fail(what, ": cannot map ", gib(size), " on CUDA device ", device, ": ", cu_error(r));
  }
  CUmemAccessDesc access{};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = device;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  r = drv().MemSetAccess(va, size, &access, 1);
  if (r != CUDA_SUCCESS) {
    drv().MemUnmap(va, size);
    drv().MemAddressFree(va, size);
    drv().MemRelease(h);
    fail(what, ": cannot grant access to ", gib(size), " on CUDA device ", device, ": ", cu_error(r));
  }
  m.va_ = va;
  m.mapped_ = size;
  return m;
}

VmmMapping::VmmMapping(VmmMapping&& o) noexcept { *this = std::move(o); }

VmmMapping& VmmMapping::operator=(VmmMapping&& o) noexcept {
  if (this != &o) {
    release();
    va_ = std::exchange(o.va_, 0);
    handle_ = std::exchange(o.handle_, 0);
    bytes_ = std::exchange(o.bytes_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
    device_ = std::exchange(o.device_, -1);
  }
  return *this;
}

VmmMapping::~VmmMapping() { release(); }

void VmmMapping::release() noexcept {
  if (va_) {
    drv().MemUnmap(CUdeviceptr(va_), mapped_);
    drv().MemAddressFree(CUdeviceptr(va_), mapped_);
  }
  if (handle_) drv().MemRelease(CUmemGenericAllocationHandle(handle_));
  va_ = handle_ = 0;
  bytes_ = mapped_ = 0;
}

PinnedHost PinnedHost::create(uint64_t bytes, const std::string& what) {
  PinnedHost p;
  void* h = nullptr;
  const cudaError_t e = cudaHostAlloc(&h, bytes ? bytes : 1, cudaHostAllocPortable | cudaHostAllocMapped);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail(what, ": cannot allocate ", gib(bytes), " of pinned host memory: ", cudaGetErrorString(e));
  }
  void* d = nullptr;
  if (cudaHostGetDevicePointer(&d, h, 0) != cudaSuccess) {
    cudaGetLastError();
    cudaFreeHost(h);
    fail(what, ": pinned host memory cannot be mapped into the device address space");
  }
  p.host_ = h;
  p.dev_ = d;
  p.bytes_ = bytes;
  return p;
}

PinnedHost::PinnedHost(PinnedHost&& o) noexcept { *this = std::move(o); }

PinnedHost& PinnedHost::operator=(PinnedHost&& o) noexcept {
  if (this != &o) {
    release();
    host_ = std::exchange(o.host_, nullptr);
    dev_ = std::exchange(o.dev_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

PinnedHost::~PinnedHost() { release(); }

void PinnedHost::release() noexcept {
  if (host_) cudaFreeHost(host_);
  host_ = dev_ = nullptr;
  bytes_ = 0;
}

}  // namespace fp::cuda
