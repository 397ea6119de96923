// glibc symbol shims for the portable prebuilt addon (MODULORA_PORTABLE_LINUX=ON, used by
// scripts/prebuild.mjs). The addon is linked on a new glibc (Debian 12: 2.36); without these, the
// linker binds every call to the newest version of its symbol, and the addon then refuses to
// load on an older glibc ("version `GLIBC_2.34' not found"). Each shim below is a hidden
// definition in the addon itself, so every call in our code and in the static libstdc++ binds to
// it, and it jumps to the oldest version of the same function (the base version of the
// architecture: GLIBC_2.2.5 on x86-64, GLIBC_2.17 on aarch64), which every glibc since then
// still exports. Which symbols: those scripts/prebuild.mjs found bound to a version newer than
// 2.17 (it fails the prebuild if a new one appears, naming it).
//
// - exp/log/pow (2.29) and expf/logf/powf (2.27): the new versions only drop the errno/SVID
//   wrappers; we compile with -fno-math-errno, so the old ones compute the same values.
// - pthread_* (2.34, when libpthread moved into libc): the old versions are the same functions
//   (in libpthread.so.0 on older glibc, which Node itself links).
// - fstat/stat/lstat/fstat64 (2.33, before which they were inline calls of __fxstat & co.).
// - __libc_single_threaded (2.32): a variable libstdc++ reads to skip atomics in single-threaded
//   processes; ours says "not single-threaded" (0), which is always correct, only never faster.
// - __pthread_key_create (2.34, a weak reference libstdc++ uses to ask "are threads linked in?").
// Functions newer than 2.17 that have no older version are implemented here, on older calls:
// - __cxa_thread_atexit_impl (2.18; the static libstdc++ calls it for thread_local objects with a
//   destructor, our thread scratch caches): destructors kept per thread under a pthread key, run
//   at thread exit, last registered first: libstdc++'s own fallback for glibc without it. (The
//   main thread's are not run at process exit; they only free memory.)
// - getentropy (2.25) and arc4random (2.36), which libstdc++'s std::random_device refers to: the
//   getrandom system call (Linux 3.17+), through syscall(), as glibc does it.
// libgcc stays a shared library (libgcc_s.so.1, on every Linux system with a C++ runtime): its
// static unwinder would need _dl_find_object (2.35).

#include <features.h>  // __GLIBC__ (macros only: nothing here may declare the functions defined below)

#if !defined(__linux__) || !defined(__GLIBC__)
#error "glibc_compat.cc is for Linux with glibc (MODULORA_PORTABLE_LINUX=ON)"
#endif

#if defined(__x86_64__)
#define MODULORA_GLIBC_BASE "GLIBC_2.2.5"
#define MODULORA_STAT_VER 1 /* _STAT_VER_LINUX */
#define MODULORA_JUMP(target) "jmp " target "@PLT\n"
#define MODULORA_FUNC_TYPE "@function"
#elif defined(__aarch64__)
#define MODULORA_GLIBC_BASE "GLIBC_2.17"
#define MODULORA_STAT_VER 0 /* _STAT_VER_KERNEL, the generic stat layout */
#define MODULORA_JUMP(target) "b " target "\n"
#define MODULORA_FUNC_TYPE "%function"
#else
#error "glibc_compat.cc: no shims for this architecture (x86-64 and aarch64 only)"
#endif

// A hidden `name` that jumps to `name@<base version>` (through the alias modulora_compat_<name>).
#define MODULORA_SHIM(name)                                                              \
  __asm__(".text\n"                                                                      \
          ".globl " #name "\n"                                                           \
          ".hidden " #name "\n"                                                          \
          ".type " #name ", " MODULORA_FUNC_TYPE "\n"                                    \
          ".p2align 4\n" #name ":\n" MODULORA_JUMP("modulora_compat_" #name)             \
          ".size " #name ", .-" #name "\n"                                               \
          ".symver modulora_compat_" #name ", " #name "@" MODULORA_GLIBC_BASE "\n");

MODULORA_SHIM(exp)
MODULORA_SHIM(log)
MODULORA_SHIM(pow)
MODULORA_SHIM(expf)
MODULORA_SHIM(logf)
MODULORA_SHIM(powf)
MODULORA_SHIM(pthread_create)
MODULORA_SHIM(pthread_detach)
MODULORA_SHIM(pthread_join)
MODULORA_SHIM(pthread_once)
MODULORA_SHIM(pthread_key_create)
MODULORA_SHIM(pthread_key_delete)
MODULORA_SHIM(pthread_getspecific)
MODULORA_SHIM(pthread_setspecific)
MODULORA_SHIM(pthread_rwlock_rdlock)
MODULORA_SHIM(pthread_rwlock_wrlock)
MODULORA_SHIM(pthread_rwlock_unlock)
MODULORA_SHIM(__pthread_key_create)

struct stat;
extern "C" {
int modulora_compat_fxstat(int ver, int fd, struct stat* buf);
int modulora_compat_xstat(int ver, const char* path, struct stat* buf);
int modulora_compat_lxstat(int ver, const char* path, struct stat* buf);
}
__asm__(".symver modulora_compat_fxstat, __fxstat@" MODULORA_GLIBC_BASE "\n"
        ".symver modulora_compat_xstat, __xstat@" MODULORA_GLIBC_BASE "\n"
        ".symver modulora_compat_lxstat, __lxstat@" MODULORA_GLIBC_BASE "\n");

// On both architectures struct stat and struct stat64 have one layout, so fstat64 is fstat.
extern "C" {
__attribute__((visibility("hidden"))) int fstat(int fd, struct stat* buf) { return modulora_compat_fxstat(MODULORA_STAT_VER, fd, buf); }
__attribute__((visibility("hidden"))) int fstat64(int fd, struct stat* buf) { return modulora_compat_fxstat(MODULORA_STAT_VER, fd, buf); }
__attribute__((visibility("hidden"))) int stat(const char* path, struct stat* buf) { return modulora_compat_xstat(MODULORA_STAT_VER, path, buf); }
__attribute__((visibility("hidden"))) int lstat(const char* path, struct stat* buf) { return modulora_compat_lxstat(MODULORA_STAT_VER, path, buf); }
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
}

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {
struct ThreadDtor {
  void (*dtor)(void*);
  void* obj;
  ThreadDtor* next;
};
pthread_key_t dtor_key;
pthread_once_t dtor_once = PTHREAD_ONCE_INIT;

void run_thread_dtors(void* head) {
  // Destructors that register more set the key again; pthread then calls this again for them.
  for (auto* e = static_cast<ThreadDtor*>(head); e != nullptr;) {
    ThreadDtor* next = e->next;
    e->dtor(e->obj);
    free(e);
    e = next;
  }
}
void make_dtor_key() {
  if (pthread_key_create(&dtor_key, run_thread_dtors) != 0) abort();
}

// Fills buf from the kernel's random source; 0 or -1 with errno, as getentropy(3).
int fill_random(void* buf, size_t len) {
  auto* p = static_cast<unsigned char*>(buf);
  while (len > 0) {
    long n = syscall(SYS_getrandom, p, len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}
}  // namespace

extern "C" {
__attribute__((visibility("hidden"))) int __cxa_thread_atexit_impl(void (*dtor)(void*), void* obj, void* /*dso_symbol*/) {
  pthread_once(&dtor_once, make_dtor_key);
  auto* e = static_cast<ThreadDtor*>(malloc(sizeof(ThreadDtor)));
  if (e == nullptr) return -1;
  e->dtor = dtor;
  e->obj = obj;
  e->next = static_cast<ThreadDtor*>(pthread_getspecific(dtor_key));
  return pthread_setspecific(dtor_key, e);
}

__attribute__((visibility("hidden"))) int getentropy(void* buf, size_t len) {
  if (len > 256) {
    errno = EIO;
    return -1;
  }
  return fill_random(buf, len);
}

__attribute__((visibility("hidden"))) uint32_t arc4random(void) noexcept {
  uint32_t v;
  if (fill_random(&v, sizeof v) != 0) abort();  // glibc's arc4random cannot fail either
  return v;
}
}
