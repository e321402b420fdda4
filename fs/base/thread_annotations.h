// Clang thread-safety annotations (clang.llvm.org/docs/ThreadSafetyAnalysis.html), as macros
// that expand to nothing for other compilers. With them the lock comments become checked
// facts: a clang build with -Wthread-safety (scripts/thread_safety.sh) fails when a GUARDED_BY
// member is touched without its mutex, a REQUIRES function is called without it, or a lock is
// taken against its declared ACQUIRED_BEFORE/ACQUIRED_AFTER order (-Wthread-safety-beta).
//
// The words, in the order they are used:
//   GUARDED_BY(mu)        a member read or written only with mu held
//   PT_GUARDED_BY(mu)     what a pointer member points to, likewise
//   REQUIRES(mu)          a function called only with mu held (the "...Locked" functions)
//   EXCLUDES(mu)          a function that takes mu itself, so must not be called with it held
//   ACQUIRED_BEFORE(m)    this mutex, when both are held, is taken first (ACQUIRED_AFTER: last)
//   CAPABILITY / SCOPED_CAPABILITY / ACQUIRE / RELEASE / TRY_ACQUIRE / ASSERT_CAPABILITY:
//                         for the lock types themselves (fs/base/mutex.h)
//   NO_THREAD_SAFETY_ANALYSIS: the escape hatch; each use says why.
#pragma once

#if defined(__clang__)
#define GLANCEFS_TSA(x) __attribute__((x))
#else
#define GLANCEFS_TSA(x)
#endif

#define CAPABILITY(x) GLANCEFS_TSA(capability(x))
#define SCOPED_CAPABILITY GLANCEFS_TSA(scoped_lockable)
#define GUARDED_BY(x) GLANCEFS_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) GLANCEFS_TSA(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) GLANCEFS_TSA(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) GLANCEFS_TSA(acquired_after(__VA_ARGS__))
#define REQUIRES(...) GLANCEFS_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) GLANCEFS_TSA(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) GLANCEFS_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) GLANCEFS_TSA(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) GLANCEFS_TSA(try_acquire_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) GLANCEFS_TSA(assert_capability(x))
#define RETURN_CAPABILITY(x) GLANCEFS_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS GLANCEFS_TSA(no_thread_safety_analysis)
