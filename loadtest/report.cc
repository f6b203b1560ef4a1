#include "loadtest/report.h"

#include <array>
#include <cstdio>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tern/v1/llm.pb.h"

namespace tern::loadtest {
namespace {

constexpr std::array<const char*, 17> kCodeNames = {
    "OK",        "CANCELLED",          "UNKNOWN",          "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS",     "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",       "UNIMPLEMENTED",    "INTERNAL",         "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

std::string FinishReasonName(int reason) {
  switch (reason) {
    case 1: return "stop";
    case 2: return "length";
    case 3: return "abort";
    default: return "none";
  }
}

// Keys often share a prefix ("sk-", "key-"), so the hint is the last four
// characters, and only of keys long enough that four give little away.
std::string KeyHint(const std::string& key) {
  if (key.empty()) return "(no key)";
  if (key.size() <= 8) return std::string(key.size(), '*');
  return "..." + key.substr(key.size() - 4);
}

std::string ModeText(const LoadOptions& o) {
  switch (o.mode) {
    case ArrivalMode::kPoisson: return absl::StrFormat("open loop, poisson %.4g req/s", o.rate);
    case ArrivalMode::kConstant: return absl::StrFormat("open loop, constant %.4g req/s", o.rate);
    case ArrivalMode::kClosedLoop: return absl::StrFormat("closed loop, concurrency %d", o.concurrency);
  }
  return "";
}

std::string SloText(const Slo& slo) {
  std::string text;
  if (slo.ttft_ms) absl::StrAppend(&text, absl::StrFormat("TTFT <= %g ms", *slo.ttft_ms));
  if (slo.tpot_ms) {
    absl::StrAppend(&text, text.empty() ? "" : " and ", absl::StrFormat("TPOT <= %g ms", *slo.tpot_ms));
  }
  return text;
}

nlohmann::json DistributionJson(const Distribution& d) {
  nlohmann::json j;
  j["count"] = d.count;
  for (const auto& [name, value] : std::initializer_list<std::pair<const char*, double>>{
           {"mean", d.mean}, {"p50", d.p50}, {"p90", d.p90}, {"p99", d.p99}, {"min", d.min}, {"max", d.max}}) {
    j[name] = d.count > 0 ? nlohmann::json(value) : nlohmann::json(nullptr);
  }
  return j;
}

nlohmann::json OptionalJson(const std::optional<double>& v) {
  return v.has_value() ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

double MsSince(Clock::time_point start, Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(t - start).count();
}

// What the server said it used; null when it said nothing.
nlohmann::json DecodingUsedJson(int mode) {
  switch (mode) {
    case tern::v1::DECODING_MODE_NORMAL: return "normal";
    case tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT: return "skeleton_of_thought";
    default: return nullptr;
  }
}

// The samples of one decoding class while the report is built.
struct ClassSamples {
  std::vector<double> ttft, tpot, e2e, tokens, points;
};

void AddToClass(const RequestTrace& trace, const RequestMetrics& m, DecodingClassReport* c, ClassSamples* s) {
  ++c->sent;
  if (!m.ok) {
    ++c->failed;
    return;
  }
  ++c->ok;
  c->output_tokens += m.output_tokens;
  s->tokens.push_back(static_cast<double>(m.output_tokens));
  s->e2e.push_back(m.e2e_ms);
  if (m.ttft_ms) s->ttft.push_back(*m.ttft_ms);
  if (m.tpot_ms) s->tpot.push_back(*m.tpot_ms);
  if (trace.decoding_used == tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT) {
    ++c->used_sot;
    s->points.push_back(trace.sot_points);
  }
  if (trace.sot_fell_back) ++c->fell_back;
  if (trace.router_decision == tern::v1::ROUTER_DECISION_SKELETON_OF_THOUGHT) ++c->routed_sot;
  if (trace.router_decision == tern::v1::ROUTER_DECISION_NORMAL) ++c->routed_normal;
}

void SummarizeClass(ClassSamples s, DecodingClassReport* c) {
  c->ttft_ms = Summarize(std::move(s.ttft));
  c->tpot_ms = Summarize(std::move(s.tpot));
  c->e2e_ms = Summarize(std::move(s.e2e));
  c->output_tokens_per_request = Summarize(std::move(s.tokens));
  c->points = Summarize(std::move(s.points));
}

nlohmann::json ClassJson(const DecodingClassReport& c) {
  return {{"decoding_mode", c.decoding_mode},
          {"sent", c.sent},
          {"completed", c.ok},
          {"failed", c.failed},
          {"used_sot", c.used_sot},
          {"fell_back", c.fell_back},
          {"router", {{"skeleton_of_thought", c.routed_sot}, {"normal", c.routed_normal}}},
          {"output_tokens", c.output_tokens},
          {"latency_ms",
           {{"ttft", DistributionJson(c.ttft_ms)},
            {"tpot", DistributionJson(c.tpot_ms)},
            {"e2e", DistributionJson(c.e2e_ms)}}},
          {"output_tokens_per_request", DistributionJson(c.output_tokens_per_request)},
          {"points_per_request", DistributionJson(c.points)}};
}

}  // namespace

std::string StatusCodeName(int code) {
  if (code == -1) return "UNFINISHED";
  if (code >= 0 && code < static_cast<int>(kCodeNames.size())) return kCodeNames[code];
  return absl::StrCat("CODE_", code);
}

Report BuildReport(const LoadOptions& options, const std::vector<RequestTrace>& traces, const RunEnd& end) {
  Report r;
  const double elapsed_s = end.elapsed_s;
  r.elapsed_s = elapsed_s;
  r.hit_max_time = end.hit_max_time;
  r.interrupted = end.interrupted;
  r.abandoned = end.abandoned;
  r.slo = options.slo;
  for (const TenantWeight& t : options.tenants) {
    TenantReport tenant;
    tenant.key_hint = KeyHint(t.api_key);
    r.tenants.push_back(std::move(tenant));
  }
  std::vector<double> ttft, tpot, itl, e2e, queue, tokens;
  std::vector<std::vector<double>> tenant_ttft(options.tenants.size());
  std::vector<SloSample> slo_samples;
  r.by_decoding = options.sot_share > 0 || options.decoding_mode != DecodingChoice::kNormal;
  r.sot.label = "SoT";
  r.sot.decoding_mode = DecodingChoiceName(DecodingChoice::kSot);
  r.non_sot.label = options.decoding_mode == DecodingChoice::kAuto ? "auto" : "normal";
  // With --decoding-mode sot every request is in the SoT class; the other stays empty.
  r.non_sot.decoding_mode = DecodingChoiceName(
      options.decoding_mode == DecodingChoice::kSot ? DecodingChoice::kNormal : options.decoding_mode);
  r.images.label = "image";
  r.images.decoding_mode = "image";
  ClassSamples sot_samples, non_sot_samples, image_samples;
  for (const RequestTrace& trace : traces) {
    ++r.sent;
    TenantReport& tenant = r.tenants.at(trace.tenant);
    ++tenant.sent;
    const RequestMetrics m = ComputeRequestMetrics(trace);
    if (trace.image_requested) {
      AddToClass(trace, m, &r.images, &image_samples);
    } else if (trace.sot_requested) {
      AddToClass(trace, m, &r.sot, &sot_samples);
    } else {
      AddToClass(trace, m, &r.non_sot, &non_sot_samples);
    }
    queue.push_back(m.client_queue_ms);
    if (!m.ok) {
      ++r.failed;
      const std::string name = StatusCodeName(trace.status_code);
      if (r.errors[name]++ == 0) r.first_error[name] = trace.status_message;
      continue;
    }
    ++r.ok;
    ++tenant.ok;
    if (trace.image_requested) {
      r.images_made += trace.images_received;
      continue;
    }
    ++r.finish_reasons[FinishReasonName(trace.finish_reason)];
    r.output_tokens += m.output_tokens;
    r.prompt_tokens += trace.usage_prompt_tokens.value_or(0);
    tokens.push_back(static_cast<double>(m.output_tokens));
    e2e.push_back(m.e2e_ms);
    if (m.ttft_ms) {
      ttft.push_back(*m.ttft_ms);
      tenant_ttft[trace.tenant].push_back(*m.ttft_ms);
    }
    if (m.tpot_ms) tpot.push_back(*m.tpot_ms);
    itl.insert(itl.end(), m.itl_ms.begin(), m.itl_ms.end());
    // A request that ended OK without a single token has no TTFT: it cannot
    // meet a TTFT objective, so it is given an infinite one.
    slo_samples.push_back({true, m.ttft_ms.value_or(std::numeric_limits<double>::infinity()), m.tpot_ms});
  }
  r.ttft_ms = Summarize(std::move(ttft));
  r.tpot_ms = Summarize(std::move(tpot));
  r.itl_ms = Summarize(std::move(itl));
  r.e2e_ms = Summarize(std::move(e2e));
  r.client_queue_ms = Summarize(std::move(queue));
  r.output_tokens_per_request = Summarize(std::move(tokens));
  for (size_t i = 0; i < r.tenants.size(); ++i) r.tenants[i].ttft_ms = Summarize(std::move(tenant_ttft[i]));
  SummarizeClass(std::move(sot_samples), &r.sot);
  SummarizeClass(std::move(non_sot_samples), &r.non_sot);
  SummarizeClass(std::move(image_samples), &r.images);
  if (elapsed_s > 0) {
    r.image_throughput = static_cast<double>(r.images_made) / elapsed_s;
    r.request_throughput = static_cast<double>(r.ok) / elapsed_s;
    r.output_token_throughput = static_cast<double>(r.output_tokens) / elapsed_s;
  }
  r.goodput = ComputeGoodput(slo_samples, r.slo, elapsed_s);
  return r;
}

std::string FormatReportTable(const LoadOptions& options, const Report& r) {
  std::string out;
  absl::StrAppendFormat(&out, "tern-load: %s, model %s at %s%s, seed %d\n", ModeText(options), options.model,
                        options.target, options.api == Api::kOpenAi ? " (OpenAI API)" : "", options.seed);
  absl::StrAppendFormat(&out, "  run         %.2f s%s, sent %d, ok %d, failed %d", r.elapsed_s,
                        r.hit_max_time  ? " (stopped by --max-time)"
                        : r.interrupted ? " (interrupted)"
                                        : "",
                        r.sent, r.ok, r.failed);
  if (r.abandoned > 0) absl::StrAppendFormat(&out, ", abandoned %d", r.abandoned);
  absl::StrAppend(&out, "\n");
  absl::StrAppendFormat(&out, "  throughput  %.3f req/s, %.1f output tok/s (%d output, %d prompt tokens)\n",
                        r.request_throughput, r.output_token_throughput, r.output_tokens, r.prompt_tokens);
  if (r.slo.ttft_ms.has_value() || r.slo.tpot_ms.has_value()) {
    absl::StrAppendFormat(&out, "  goodput     %.3f req/s: %d of %d requests met %s\n", r.goodput.requests_per_s,
                          r.goodput.good_requests, r.sent, SloText(r.slo));
  } else {
    absl::StrAppendFormat(&out, "  goodput     %.3f req/s (no --slo-ttft-ms or --slo-tpot-ms: every OK request counts)\n",
                          r.goodput.requests_per_s);
  }
  if (!r.finish_reasons.empty()) {
    absl::StrAppend(&out, "  finish     ");
    for (const auto& [name, count] : r.finish_reasons) absl::StrAppendFormat(&out, " %s %d", name, count);
    absl::StrAppend(&out, "\n");
  }
  absl::StrAppendFormat(&out, "\n  %-18s %7s %10s %10s %10s %10s %10s\n", "latency (ms)", "count", "mean", "p50",
                        "p90", "p99", "max");
  const auto row = [&](const char* name, const Distribution& d) {
    if (d.count == 0) {
      absl::StrAppendFormat(&out, "  %-18s %7d %10s %10s %10s %10s %10s\n", name, 0, "-", "-", "-", "-", "-");
      return;
    }
    absl::StrAppendFormat(&out, "  %-18s %7d %10.2f %10.2f %10.2f %10.2f %10.2f\n", name, d.count, d.mean, d.p50,
                          d.p90, d.p99, d.max);
  };
  row("TTFT", r.ttft_ms);
  row("TPOT", r.tpot_ms);
  row("ITL", r.itl_ms);
  row("e2e", r.e2e_ms);
  row("client queue", r.client_queue_ms);
  row("output tokens/req", r.output_tokens_per_request);
  if (r.by_decoding) {
    absl::StrAppendFormat(&out, "\n  %-18s %7s %7s %9s %9s %10s %10s\n", "decoding (asked)", "sent", "ok", "used SoT",
                          "fell back", "points/req", "tokens/req");
    for (const DecodingClassReport* c : {&r.sot, &r.non_sot}) {
      if (c->sent == 0) continue;
      absl::StrAppendFormat(&out, "  %-18s %7d %7d %9d %9d %10s %10s\n", c->label, c->sent, c->ok, c->used_sot,
                            c->fell_back, c->points.count ? absl::StrFormat("%.2f", c->points.mean) : "-",
                            c->output_tokens_per_request.count
                                ? absl::StrFormat("%.1f", c->output_tokens_per_request.mean)
                                : "-");
    }
    absl::StrAppendFormat(&out, "\n  %-18s %7s %10s %10s %10s %10s %10s\n", "by decoding (ms)", "count", "mean", "p50",
                          "p90", "p99", "max");
    for (const DecodingClassReport* c : {&r.sot, &r.non_sot}) {
      if (c->sent == 0) continue;
      row((c->label + " TTFT").c_str(), c->ttft_ms);
      row((c->label + " TPOT").c_str(), c->tpot_ms);
      row((c->label + " e2e").c_str(), c->e2e_ms);
    }
    // How SoT requests compare with the rest in the same run (like for like
    // only when both asked for the same number of output tokens).
    if (r.sot.e2e_ms.count > 0 && r.non_sot.e2e_ms.count > 0) {
      const auto ratio = [](const Distribution& a, const Distribution& b) {
        return a.count > 0 && b.count > 0 && b.p50 > 0 ? absl::StrFormat("%.3fx", a.p50 / b.p50) : std::string("-");
      };
      absl::StrAppendFormat(&out, "  SoT / %-12s p50: e2e %s, TTFT %s, TPOT %s\n", r.non_sot.label,
                            ratio(r.sot.e2e_ms, r.non_sot.e2e_ms), ratio(r.sot.ttft_ms, r.non_sot.ttft_ms),
                            ratio(r.sot.tpot_ms, r.non_sot.tpot_ms));
    }
  }
  if (r.images.sent > 0) {
    absl::StrAppendFormat(&out, "\n  images      model %s: %d requests, %d ok, %d images, %.3f images/s\n",
                          options.image_model, r.images.sent, r.images.ok, r.images_made, r.image_throughput);
    absl::StrAppendFormat(&out, "  %-18s %7s %10s %10s %10s %10s %10s\n", "images (ms)", "count", "mean", "p50", "p90",
                          "p99", "max");
    row("first step", r.images.ttft_ms);
    row("per step", r.images.tpot_ms);
    row("image e2e", r.images.e2e_ms);
    row("steps/request", r.images.output_tokens_per_request);
  }
  if (r.tenants.size() > 1) {
    absl::StrAppend(&out, "\n  tenant (API key)      sent      ok   TTFT p50   TTFT p99\n");
    for (size_t i = 0; i < r.tenants.size(); ++i) {
      const TenantReport& t = r.tenants[i];
      absl::StrAppendFormat(&out, "  %-18s %7d %7d %10s %10s\n", absl::StrFormat("#%d %s", i, t.key_hint), t.sent, t.ok,
                            t.ttft_ms.count ? absl::StrFormat("%.2f", t.ttft_ms.p50) : "-",
                            t.ttft_ms.count ? absl::StrFormat("%.2f", t.ttft_ms.p99) : "-");
    }
  }
  if (!r.errors.empty()) {
    absl::StrAppend(&out, "\n  errors\n");
    for (const auto& [name, count] : r.errors) {
      absl::StrAppendFormat(&out, "  %-20s %7d  %s\n", name, count, r.first_error.at(name));
    }
  }
  return out;
}

nlohmann::json ReportToJson(const LoadOptions& o, const Report& r, const std::vector<RequestTrace>* traces,
                            Clock::time_point start) {
  nlohmann::json config;
  config["api"] = o.api == Api::kOpenAi ? "openai" : "grpc";
  config["target"] = o.target;
  config["model"] = o.model;
  config["connections"] = o.connections;
  config["mode"] = o.mode == ArrivalMode::kPoisson    ? "poisson"
                   : o.mode == ArrivalMode::kConstant ? "constant"
                                                      : "closed_loop";
  config["rate"] = o.mode == ArrivalMode::kClosedLoop ? nlohmann::json(nullptr) : nlohmann::json(o.rate);
  config["concurrency"] = o.mode == ArrivalMode::kClosedLoop ? nlohmann::json(o.concurrency) : nlohmann::json(nullptr);
  config["duration_s"] = OptionalJson(o.duration_s);
  config["requests"] = o.num_requests.has_value() ? nlohmann::json(*o.num_requests) : nlohmann::json(nullptr);
  config["max_in_flight"] = o.max_in_flight;
  config["max_time_s"] = o.max_time_s;
  config["timeout_s"] = o.request_timeout_s;
  config["prompts"] = o.prompts_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.prompts_path);
  config["synthetic_prompt_tokens"] = o.synthetic_prompt_tokens;
  if (o.max_tokens_lo.has_value()) {
    config["max_tokens_dist"] = {{"kind", "uniform"}, {"lo", *o.max_tokens_lo}, {"hi", *o.max_tokens_hi}};
  } else {
    config["max_tokens"] = o.max_tokens;
  }
  config["ignore_eos"] = o.ignore_eos;
  config["decoding_mode"] = DecodingChoiceName(o.decoding_mode);
  config["sot_share"] = o.sot_share;
  config["sot_outline_points"] = o.sot_outline_points;
  config["sot_point_tokens"] =
      o.sot_point_tokens.has_value() ? nlohmann::json(*o.sot_point_tokens) : nlohmann::json(nullptr);
  config["temperature"] = o.temperature.has_value() ? nlohmann::json(*o.temperature) : nlohmann::json(nullptr);
  config["seed"] = o.seed;
  config["slo_ttft_ms"] = OptionalJson(o.slo.ttft_ms);
  config["slo_tpot_ms"] = OptionalJson(o.slo.tpot_ms);
  nlohmann::json tenants = nlohmann::json::array();
  for (size_t i = 0; i < o.tenants.size(); ++i) {
    const TenantReport& t = r.tenants[i];
    tenants.push_back({{"key_hint", t.key_hint}, {"weight", o.tenants[i].weight}, {"sent", t.sent},
                       {"completed", t.ok}, {"ttft_ms", DistributionJson(t.ttft_ms)}});
  }

  nlohmann::json j;
  j["tool"] = "tern-load";
  j["config"] = config;
  j["summary"] = {
      {"elapsed_s", r.elapsed_s},
      {"hit_max_time", r.hit_max_time},
      {"interrupted", r.interrupted},
      {"sent", r.sent},
      {"completed", r.ok},
      {"failed", r.failed},
      {"abandoned", r.abandoned},
      {"output_tokens", r.output_tokens},
      {"prompt_tokens", r.prompt_tokens},
      {"request_throughput", r.request_throughput},
      {"output_token_throughput", r.output_token_throughput},
      {"goodput", {{"requests_per_s", r.goodput.requests_per_s}, {"good_requests", r.goodput.good_requests}}},
  };
  j["latency_ms"] = {{"ttft", DistributionJson(r.ttft_ms)},
                     {"tpot", DistributionJson(r.tpot_ms)},
                     {"itl", DistributionJson(r.itl_ms)},
                     {"e2e", DistributionJson(r.e2e_ms)},
                     {"client_queue", DistributionJson(r.client_queue_ms)}};
  j["output_tokens_per_request"] = DistributionJson(r.output_tokens_per_request);
  j["errors"] = nlohmann::json::object();
  for (const auto& [name, count] : r.errors) {
    j["errors"][name] = {{"count", count}, {"first_message", r.first_error.at(name)}};
  }
  j["finish_reasons"] = r.finish_reasons;
  j["tenants"] = tenants;
  j["decoding"] = {{"sot", ClassJson(r.sot)}, {"non_sot", ClassJson(r.non_sot)}};
  if (r.images.sent > 0) {
    j["images"] = {{"requests", ClassJson(r.images)},
                   {"images", r.images_made},
                   {"images_per_s", r.image_throughput},
                   {"model", o.image_model}};
  }
  if (traces != nullptr) {
    nlohmann::json requests = nlohmann::json::array();
    for (const RequestTrace& t : *traces) {
      const RequestMetrics m = ComputeRequestMetrics(t);
      requests.push_back({{"index", t.index},
                          {"tenant", t.tenant},
                          {"status", StatusCodeName(t.status_code)},
                          {"scheduled_ms", MsSince(start, t.scheduled)},
                          {"sent_ms", MsSince(start, t.sent)},
                          {"ttft_ms", OptionalJson(m.ttft_ms)},
                          {"tpot_ms", OptionalJson(m.tpot_ms)},
                          {"e2e_ms", m.e2e_ms},
                          {"max_tokens", t.max_tokens},
                          {"output_tokens", m.output_tokens},
                          {"prompt_tokens", t.usage_prompt_tokens.has_value()
                                                ? nlohmann::json(*t.usage_prompt_tokens)
                                                : nlohmann::json(nullptr)},
                          {"finish_reason", FinishReasonName(t.finish_reason)},
                          {"decoding_asked", t.image_requested ? r.images.decoding_mode
                                             : t.sot_requested ? r.sot.decoding_mode
                                                               : r.non_sot.decoding_mode},
                          {"decoding_used", DecodingUsedJson(t.decoding_used)},
                          {"sot_points", t.sot_points},
                          {"sot_fell_back", t.sot_fell_back}});
    }
    j["requests"] = std::move(requests);
  }
  return j;
}

}  // namespace tern::loadtest
