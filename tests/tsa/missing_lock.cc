// Must NOT compile under scripts/thread_safety.sh (clang -Wthread-safety -Werror): it shows
// that the annotations are checked, not comments. Each function below breaks one rule the
// cache relies on; the script expects a thread-safety error for each marked line and fails if
// this file compiles or if a marked line is not reported.
#include "cache/flight_table.h"
#include "cache/image_table.h"

namespace glancefs::cache {

// Image::pinned is GUARDED_BY(image.mu): writing it without the lock.
void PinWithoutTheLock(Image& image) {
  image.pinned = true;  // EXPECT-TSA: writing variable 'pinned' requires holding mutex
}

// ImageTable::AddBlockLocked REQUIRES(image.mu): calling it without the lock.
void MarkStoredWithoutTheLock(ImageTable& table, Image& image) {
  table.AddBlockLocked(image, 0);  // EXPECT-TSA: requires holding mutex 'image.mu'
}

// The lock order says Image::mu before FlightTable::mu_ (and ImageTable::mu_ before
// Image::mu); a flight-table lock is never held while an image's is taken. Holding an image's
// lock while asking the table for a flight is right; here the order is checked with the
// locks the cache declares (-Wthread-safety-beta checks ACQUIRED_BEFORE).
struct Backwards {
  Mutex flights_mu ACQUIRED_AFTER(Image::mu);
  void TakeImageLast(Image& image) {
    MutexLock flights(&flights_mu);
    MutexLock lock(&image.mu);  // EXPECT-TSA: mutex 'mu' must be acquired before 'flights_mu'
  }
};

}  // namespace glancefs::cache
