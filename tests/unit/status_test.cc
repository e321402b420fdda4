#include "fs/base/status.h"

#include <gtest/gtest.h>

namespace glancefs {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  GLANCEFS_ASSIGN_OR_RETURN(int h, Half(x));
  GLANCEFS_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status().ok());
  EXPECT_EQ(Status().ToString(), "OK");
  Status s = Status::Corruption("bad L2");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.ToString(), "Corruption: bad L2");
  EXPECT_EQ(s.WithContext("image x").message(), "image x: bad L2");
  EXPECT_TRUE(Status::FromErrno(ENOENT, "f").IsNotFound());
  EXPECT_EQ(Status::FromErrno(EIO, "f").code(), Status::Code::kIOError);
}

TEST(StatusTest, ResultPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(Quarter(8).status().ok());
}

}  // namespace
}  // namespace glancefs
