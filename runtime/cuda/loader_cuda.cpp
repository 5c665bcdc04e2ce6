// Reads tensor bytes from GGUF shards into device (or pinned host) memory, as fast as the
// storage allows: the jobs are cut into chunks; reader threads take chunks in file order,
// pread them into a free pinned staging buffer (O_DIRECT where the filesystem accepts it,
// which skips the page cache's extra copy; buffered otherwise), and start the buffer's
// host-to-device copy on that buffer's own stream. A buffer is reused once its copy's
// event has completed, so reads and copies overlap across all buffers.
#include <cuda_runtime.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "ops/core/error.h"
#include "runtime/cuda/loader.h"

namespace fp::cuda {
namespace {

constexpr uint64_t kDirectAlign = 4096;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("CUDA error in ", what, ": ", cudaGetErrorString(e));
}

// One shard file: an O_DIRECT descriptor (when the filesystem allows) and a buffered one.
struct Shard {
  std::string path;
  int fd_direct = -1, fd_buffered = -1;
  std::atomic<bool> direct_ok{false};
};

struct Slot {
  uint8_t* buf = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t event = nullptr;
};

// Staging buffers of one device, handed out one reader at a time.
struct SlotPool {
  int device = 0;
  std::vector<Slot> slots;
  std::vector<int> free;
  std::mutex mu;
  std::condition_variable cv;

  int acquire() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return !free.empty(); });
    const int i = free.back();
    free.pop_back();
    return i;
  }
  void release(int i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      free.push_back(i);
    }
    cv.notify_one();
  }
};

struct Chunk {
  uint32_t shard;
  uint64_t offset, bytes;
  uint8_t* dst;
  bool on_host;
  int device;
  const uint8_t* mapped;
};

// Reads [off, off + len) of the shard into buf; returns where the bytes start in buf.
const uint8_t* read_range(Shard& s, uint8_t* buf, uint64_t cap, uint64_t off, uint64_t len) {
  if (s.direct_ok.load()) {
    const uint64_t a0 = off / kDirectAlign * kDirectAlign, end = off + len;
    const uint64_t alen = (end - a0 + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
    if (alen <= cap) {
      uint64_t got = 0;
      bool ok = true;
      while (a0 + got < end) {
        const ssize_t n = pread(s.fd_direct, buf + got, alen - got, off_t(a0 + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          ok = false;
          break;
        }
        got += uint64_t(n);
      }
      if (ok) return buf + (off - a0);
      s.direct_ok.store(false);  // this filesystem refuses O_DIRECT reads: buffered from now on
    }
  }
  uint64_t got = 0;
  while (got < len) {
    const ssize_t n = pread(s.fd_buffered, buf + got, len - got, off_t(off + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(s.path, ": read of ", len, " bytes at offset ", off, " failed: ", std::strerror(errno));
    if (n == 0) fail(s.path, ": unexpected end of file reading ", len, " bytes at offset ", off);
    got += uint64_t(n);
  }
  return buf;
}

}  // namespace

std::vector<std::string> shard_paths(const gguf::File& f) {
  const std::string& p = f.path();
  const size_t n = f.shard_count();
  if (n == 1) return {p};
  // "NAME-00001-of-00005.gguf": the suffix is 20 characters.
  if (p.size() < 20) return {};
  const std::string stem = p.substr(0, p.size() - 20);
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu.gguf", i + 1, n);
    out.push_back(stem + buf);
  }
  return out;
}

bool read_jobs(const std::vector<std::string>& shard_names, std::vector<ReadJob> jobs, const LoadOptions& opts,
               int& readers_used) {
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  const int readers = opts.readers > 0 ? opts.readers : std::min(16, hw);
  readers_used = readers;
  const uint64_t chunk_bytes = uint64_t(std::max<int64_t>(opts.chunk_bytes, 1 << 20));

  // Shards: open what can be opened; jobs on the others copy from the mapping.
  std::vector<std::unique_ptr<Shard>> shards;
  for (const std::string& path : shard_names) {
    auto s = std::make_unique<Shard>();
    s->path = path;
    s->fd_buffered = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (s->fd_buffered >= 0 && opts.direct_io) {
      s->fd_direct = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
      s->direct_ok = s->fd_direct >= 0;
    }
    shards.push_back(std::move(s));
  }
  auto close_all = [&] {
    for (auto& s : shards) {
      if (s->fd_direct >= 0) ::close(s->fd_direct);
      if (s->fd_buffered >= 0) ::close(s->fd_buffered);
    }
  };

  std::vector<Chunk> chunks;
  uint64_t total = 0;
  std::sort(jobs.begin(), jobs.end(), [](const ReadJob& a, const ReadJob& b) {
    return a.shard != b.shard ? a.shard < b.shard : a.offset < b.offset;
  });
  for (const ReadJob& j : jobs) {
    total += j.bytes;
    for (uint64_t o = 0; o < j.bytes; o += chunk_bytes) {
      const uint64_t n = std::min(chunk_bytes, j.bytes - o);
      chunks.push_back({j.shard, j.offset + o, n, static_cast<uint8_t*>(j.dst) + o, j.on_host, j.device,
                        j.mapped.empty() ? nullptr : j.mapped.data() + o});
    }
  }

  // Staging buffers per device.
  std::map<int, std::unique_ptr<SlotPool>> pools;
  const int per_device = opts.staging_buffers > 0 ? opts.staging_buffers : readers + 4;
  std::string copy_error;  // the first failed upload, seen when the streams drain
  auto destroy_pools = [&] {
    for (auto& [dev, pool] : pools) {
      cudaSetDevice(dev);
      for (Slot& s : pool->slots) {
        if (s.stream) {
          const cudaError_t e = cudaStreamSynchronize(s.stream);
          if (e != cudaSuccess && copy_error.empty()) copy_error = cudaGetErrorString(e);
        }
        if (s.event) cudaEventDestroy(s.event);
        if (s.stream) cudaStreamDestroy(s.stream);
        if (s.buf) cudaFreeHost(s.buf);
      }
    }
    pools.clear();
  };
  try {
    for (const Chunk& c : chunks) {
      if (pools.count(c.device)) continue;
      auto pool = std::make_unique<SlotPool>();
      pool->device = c.device;
      check(cudaSetDevice(c.device), "cudaSetDevice (loader)");
      for (int i = 0; i < per_device; ++i) {
        Slot s;
        check(cudaHostAlloc(reinterpret_cast<void**>(&s.buf), chunk_bytes + 2 * kDirectAlign, cudaHostAllocPortable),
              "pinned staging buffer");
        pool->slots.push_back(s);
        Slot& t = pool->slots.back();
        check(cudaStreamCreateWithFlags(&t.stream, cudaStreamNonBlocking), "loader stream");
        check(cudaEventCreateWithFlags(&t.event, cudaEventDisableTiming), "loader event");
        pool->free.push_back(i);
      }
      pools[c.device] = std::move(pool);
    }
  } catch (...) {
    destroy_pools();
    close_all();
    throw;
  }

  std::atomic<size_t> next{0};
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::exception_ptr error;
  std::mutex error_mu;
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  auto reader = [&] {
    try {
      int current = -1;
      for (size_t i; !stop.load() && (i = next.fetch_add(1)) < chunks.size();) {
        const Chunk& c = chunks[i];
        if (c.device != current) {
          check(cudaSetDevice(c.device), "cudaSetDevice (reader)");
          current = c.device;
        }
        SlotPool& pool = *pools.at(c.device);
        const int si = pool.acquire();
        Slot& slot = pool.slots[size_t(si)];
        try {
          check(cudaEventSynchronize(slot.event), "staging buffer reuse");
          Shard* sh = c.shard < shards.size() ? shards[c.shard].get() : nullptr;
          const uint8_t* src;
          if (sh && sh->fd_buffered >= 0) {
            src = read_range(*sh, slot.buf, chunk_bytes + 2 * kDirectAlign, c.offset, c.bytes);
          } else {
            if (!c.mapped) fail("internal: loader chunk without a file or a mapping");
            std::memcpy(slot.buf, c.mapped, c.bytes);
            src = slot.buf;
          }
          if (c.on_host) {
            std::memcpy(c.dst, src, c.bytes);
          } else {
            check(cudaMemcpyAsync(c.dst, src, c.bytes, cudaMemcpyHostToDevice, slot.stream), "weight upload");
            check(cudaEventRecord(slot.event, slot.stream), "weight upload event");
          }
        } catch (...) {
          pool.release(si);
          throw;
        }
        pool.release(si);
        done.fetch_add(c.bytes);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
      stop = true;
    }
  };

  std::vector<std::thread> threads;
  for (int i = 0; i < readers; ++i) threads.emplace_back(reader);
  std::atomic<bool> finished{false};
  std::thread progress;
  if (opts.progress) {
    progress = std::thread([&] {
      while (!finished.load()) {
        opts.progress({done.load(), total, seconds(), false});
        for (int k = 0; k < 10 && !finished.load(); ++k) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
  }
  for (auto& t : threads) t.join();
  destroy_pools();  // waits for the last copies
  finished = true;
  if (progress.joinable()) progress.join();
  bool all_direct = !shards.empty();
  for (auto& s : shards) all_direct = all_direct && s->direct_ok.load();
  close_all();
  if (error) std::rethrow_exception(error);
  if (!copy_error.empty()) fail("weight upload failed: ", copy_error);
  if (opts.progress) opts.progress({done.load(), total, seconds(), true});
  return all_direct;
}

}  // namespace fp::cuda
