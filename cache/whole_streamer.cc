#include "cache/whole_streamer.h"

#include "fs/base/log.h"

namespace glancefs::cache {

void WholeImageStreamer::StartLocked(const ImagePtr& image, const SourcePtr& upstream,
                                     FetchWhy why) {
  if (image->streaming || image->retired) return;
  if (image->complete() && !flights_->HasPending(image->no)) return;  // all here
  image->streaming = true;
  LOG_INFO("cache: image %s can only be read whole; streaming all %llu bytes into the cache",
           image->id.c_str(), static_cast<unsigned long long>(image->size));
  // Refused only while the cache closes, whose destructor fails every flight left.
  if (!pool_->Submit([this, image, upstream, why] { Stream(image, upstream, why); })) {
    image->streaming = false;
  }
}

void WholeImageStreamer::Start(const ImagePtr& image, const SourcePtr& upstream, FetchWhy why) {
  MutexLock lock(&image->mu);
  StartLocked(image, upstream, why);
}

void WholeImageStreamer::Stream(const ImagePtr& image, const SourcePtr& upstream, FetchWhy why) {
  for (;;) {
    Status status =
        fetcher_->Fetch(image, image->no.load(), 0, image->nblocks, upstream, why, nullptr);
    if (!status.ok()) {
      LOG_WARNING("cache: reading image %s whole: %s", image->id.c_str(),
                  status.ToString().c_str());
    }
    MutexLock lock(&image->mu);
    // A failed pass has failed the flights it had not reached. Flights still waiting were made
    // for blocks the pass had gone by (their store failed), after it failed, or for the image
    // renumbered (evicted) meanwhile: another pass serves them.
    const uint64_t no = image->no.load();
    if (flights_->HasPending(no) && !closing_->load() && !image->retired) continue;
    if (status.ok()) status = Status::Unavailable("image " + image->id + " changed as it was read");
    flights_->FailPending(no, status);
    image->streaming = false;
    break;
  }
  image->changed.SignalAll();
}

}  // namespace glancefs::cache
