// Comms (nccl_comms.h): NCCL communicators for one process driving several GPUs. NCCL is
// opened with dlopen when the first communicators are made, not linked, so that binaries
// start (and run one-GPU plans) on machines without libnccl; a build without nccl.h
// refuses multi-GPU plans naming the CMake option.
#include "runtime/cuda/nccl_comms.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <mutex>

#include "ops/core/error.h"

#if FLASHPLAN_HAVE_NCCL
#include <dlfcn.h>
#include <nccl.h>
#endif

namespace fp::cuda {

#if FLASHPLAN_HAVE_NCCL

namespace {

// The NCCL entry points this file calls, from libnccl.so.2 on the loader's search path
// (LD_LIBRARY_PATH, the system's), else the one CMake found (FLASHPLAN_NCCL_FALLBACK).
struct Nccl {
  std::string error;  // why NCCL could not be opened ("" when it was)
  decltype(&ncclGetVersion) get_version = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  decltype(&ncclCommInitAll) init_all = nullptr;
  decltype(&ncclCommDestroy) destroy = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
};

const Nccl& nccl() {
  static Nccl n;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    std::string tried = "libnccl.so.2";
    if (!h && std::string(FLASHPLAN_NCCL_FALLBACK).size()) {
      h = dlopen(FLASHPLAN_NCCL_FALLBACK, RTLD_NOW | RTLD_LOCAL);
      tried += str(", ", FLASHPLAN_NCCL_FALLBACK);
    }
    if (!h) {
      const char* e = dlerror();
      n.error = str("cannot open NCCL (tried ", tried, "): ", e ? e : "not found",
                    "; put libnccl.so.2's folder on LD_LIBRARY_PATH (pip's nvidia-nccl-cu13 has one)");
      return;
    }
    auto sym = [&](auto& f, const char* name) {
      f = reinterpret_cast<std::remove_reference_t<decltype(f)>>(dlsym(h, name));
      if (!f && n.error.empty()) n.error = str("NCCL library without ", name);
    };
    sym(n.get_version, "ncclGetVersion");
    sym(n.error_string, "ncclGetErrorString");
    sym(n.init_all, "ncclCommInitAll");
    sym(n.destroy, "ncclCommDestroy");
    sym(n.all_reduce, "ncclAllReduce");
  });
  return n;
}

const Nccl& nccl_or_fail() {
  const Nccl& n = nccl();
  if (!n.error.empty()) fail("multi-GPU plans: ", n.error);
  return n;
}

void nccl_ck(ncclResult_t r, const char* what, int rank, int device) {
  if (r != ncclSuccess)
    fail("NCCL ", what, " (rank ", rank, ", CUDA device ", device, "): ", nccl().error_string(r));
}

}  // namespace

bool Comms::available() { return nccl().error.empty(); }

std::string Comms::version() {
  const Nccl& n = nccl();
  if (!n.error.empty()) return n.error;
  int v = 0;
  if (n.get_version(&v) != ncclSuccess) return "unknown";
  return str(v / 10000, ".", v / 100 % 100, ".", v % 100);
}

Comms::Comms(const std::vector<int>& devices) : devices_(devices) {
  if (devices.empty()) fail("NCCL communicators: no devices");
  // Before NCCL's first call reads its environment; overwrite = 0 keeps a value the user set.
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  const Nccl& n = nccl_or_fail();
  std::vector<ncclComm_t> c(devices.size(), nullptr);
  nccl_ck(n.init_all(c.data(), int(devices.size()), devices.data()), "ncclCommInitAll", 0, devices[0]);
  comms_.assign(c.begin(), c.end());
}

Comms::~Comms() {
  for (void* c : comms_)
    if (c) nccl().destroy(static_cast<ncclComm_t>(c));
}

void Comms::all_reduce_sum(int rank, float* buf, size_t count, void* stream) const {
  if (rank < 0 || rank >= size()) fail("NCCL all-reduce: rank ", rank, ", expected 0..", size() - 1);
  nccl_ck(nccl().all_reduce(buf, buf, count, ncclFloat32, ncclSum, static_cast<ncclComm_t>(comms_[size_t(rank)]),
                            static_cast<cudaStream_t>(stream)),
          "ncclAllReduce", rank, devices_[size_t(rank)]);
}

#else  // no nccl.h at configure time

bool Comms::available() { return false; }
std::string Comms::version() { return "none (built without NCCL: FLASHPLAN_NCCL=OFF or nccl.h not found)"; }

Comms::Comms(const std::vector<int>& devices) : devices_(devices) {
  fail("multi-GPU plans need NCCL: this build has none (configure with -DFLASHPLAN_NCCL=ON where nccl.h is "
       "installed)");
}
Comms::~Comms() = default;
void Comms::all_reduce_sum(int, float*, size_t, void*) const { fail("NCCL all-reduce: built without NCCL"); }

#endif

}  // namespace fp::cuda
