// Status plumbing shared by every host module.
//
// Debian 12's Abseil (20220623) has no public RETURN_IF_ERROR / ASSIGN_OR_RETURN,
// so tern keeps these two macros here. CHECK lives in check.h.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TERN_STATUS_CONCAT_INNER_(a, b) a##b
#define TERN_STATUS_CONCAT_(a, b) TERN_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                    \
  do {                                                           \
    ::absl::Status tern_status_ = (expr);                        \
    if (!tern_status_.ok()) return tern_status_;                 \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (a StatusOr<T>); on error
// returns its status, else moves the value into `lhs` (which may declare a
// variable: ASSIGN_OR_RETURN(auto x, Make());).
#define ASSIGN_OR_RETURN(lhs, expr) \
  TERN_ASSIGN_OR_RETURN_IMPL_(TERN_STATUS_CONCAT_(tern_statusor_, __LINE__), lhs, expr)

#define TERN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
