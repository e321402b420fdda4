#include "fs/base/time_util.h"

#include <gtest/gtest.h>

namespace glancefs {
namespace {

TEST(TimeUtilTest, ParsesGlanceTimestamps) {
  EXPECT_EQ(*ParseIso8601("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseIso8601("2024-05-01T12:34:56Z"), 1714566896);
  EXPECT_EQ(*ParseIso8601("2024-05-01T12:34:56.123456"), 1714566896);
  EXPECT_EQ(*ParseIso8601("2024-05-01T14:34:56+02:00"), 1714566896);
}

TEST(TimeUtilTest, RejectsGarbage) {
  for (const char* bad : {"", "2024", "2024-13-01T00:00:00Z", "2024-05-01 12:34:56Z",
                          "2024-05-01T12:34:56Zjunk", "2024-05-01T12:34:56."}) {
    EXPECT_FALSE(ParseIso8601(bad).ok()) << bad;
  }
}

TEST(TimeUtilTest, FormatsRoundTrip) {
  EXPECT_EQ(FormatIso8601(1714566896), "2024-05-01T12:34:56Z");
  EXPECT_EQ(*ParseIso8601(FormatIso8601(1234567890)), 1234567890);
}

}  // namespace
}  // namespace glancefs
