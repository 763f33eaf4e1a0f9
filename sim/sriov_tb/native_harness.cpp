// Transaction-level harness around Verilator's model of sriov_ep_top (the Amaranth export).
//
// Built by sriov_tb.native together with the model into one shared library, which Python
// loads with ctypes. Every call runs whole transactions (a config request and its completion,
// a memory request and its decode, an interrupt, idle cycles, a reset) on the model and
// returns when they are done, so the cost of crossing from Python is paid per transaction
// (or per batch, sn_cfg_batch), never per clock edge.
//
// Cycle behaviour is the cocotb bench's (sriov_tb.cocotb_bench), which is the Amaranth
// testbench's: a call starts and ends just after a rising edge of clk; inputs are set there;
// outputs are sampled at the falling edge before the next rising edge (the values that edge
// acts on). Cycle counts, Request Retry Status reissues and MSI-X message timing are therefore
// the same as on the other two backends.
//
// Nothing here knows where a field sits in a payload: the payloads the Python side packs and
// unpacks travel as little-endian arrays of 32-bit words, and the few fields this file reads or
// writes itself (the config request's and completion's, for speed) are placed by offsets the
// Python side takes from the project's amaranth.lib.data layouts (sn_set_layout).
//
// The port names are those of the export for every configuration (Verilator writes `__` as
// `___05F`); only their widths change, and the templates below take any width Verilator uses
// (CData/SData/IData/QData integers or VlWide arrays).

#include "Vsriov_ep_top.h"
#include "Vsriov_ep_top___024root.h"
#include "verilated.h"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#if VM_TRACE
#include "verilated_vcd_c.h"
#endif

// -- Port access, any width -------------------------------------------------------------------

template <typename T>
static inline void put_words(T& port, const uint32_t* words, int nwords) {
    uint64_t value = nwords > 0 ? words[0] : 0;
    if (sizeof(T) > 4 && nwords > 1) value |= static_cast<uint64_t>(words[1]) << 32;
    port = static_cast<T>(value);
}

template <std::size_t N>
static inline void put_words(VlWide<N>& port, const uint32_t* words, int nwords) {
    for (std::size_t i = 0; i < N; ++i) port[i] = static_cast<int>(i) < nwords ? words[i] : 0;
}

template <typename T>
static inline int get_words(const T& port, uint32_t* words, int nwords) {
    uint64_t value = static_cast<uint64_t>(port);
    if (nwords > 0) words[0] = static_cast<uint32_t>(value);
    if (nwords > 1) words[1] = static_cast<uint32_t>(value >> 32);
    for (int i = 2; i < nwords; ++i) words[i] = 0;
    return sizeof(T) > 4 ? 2 : 1;
}

template <std::size_t N>
static inline int get_words(const VlWide<N>& port, uint32_t* words, int nwords) {
    for (int i = 0; i < nwords; ++i)
        words[i] = static_cast<std::size_t>(i) < N ? static_cast<uint32_t>(port[i]) : 0;
    return static_cast<int>(N);
}

template <typename T>
static inline int words_of(const T&) { return sizeof(T) > 4 ? 2 : 1; }

template <std::size_t N>
static inline int words_of(const VlWide<N>&) { return static_cast<int>(N); }

static inline uint64_t field(uint64_t word, int lsb, int width) {
    uint64_t value = word >> lsb;
    return width >= 64 ? value : value & ((uint64_t(1) << width) - 1);
}

static inline uint64_t place(uint64_t value, int lsb, int width) {
    uint64_t mask = width >= 64 ? ~uint64_t(0) : (uint64_t(1) << width) - 1;
    return (value & mask) << lsb;
}

// -- Status codes -----------------------------------------------------------------------------

enum {
    SN_OK = 0,
    SN_TIMEOUT_ACCEPT = -1,     // a request was not accepted within the timeout
    SN_TIMEOUT_RESPONSE = -2,   // no response within the timeout
    SN_TIMEOUT_RRS = -3,        // Request Retry Status the retry limit of times in a row
    SN_TIMEOUT_QUIET = -4,      // MSI-X messages kept coming
    SN_CALLBACK_ERROR = -5,     // the user configuration callback failed (Python has it)
    SN_BAD_ARGUMENT = -6,
};

// Indices into the layout table sn_set_layout takes (lsb, width pairs).
enum {
    L_REQ_TYPE1, L_REQ_RID, L_REQ_REG, L_REQ_BE, L_REQ_WRITE, L_REQ_DATA,
    L_CPL_STATUS, L_CPL_DATA,
    L_DONE_VALID, L_DONE_OK,
    L_COUNT
};

// The user logic behind ucfg_req/ucfg_res: payload words of the request in, the packed
// response out (return 0), or nonzero when the Python side failed (it keeps the exception).
typedef int (*sn_user_callback)(const uint32_t* request, int nwords, uint64_t* response);

struct Sim {
    std::unique_ptr<VerilatedContext> context;
    std::unique_ptr<Vsriov_ep_top> top;
#if VM_TRACE
    std::unique_ptr<VerilatedVcdC> trace;
#endif
    bool tracing = false;           // dumping now (a dump is open and not switched off)
    // An input was set since the last eval (see fall): the harness sets it with every input
    // it writes (set_inputs).
    bool dirty = true;
    uint64_t now = 0;               // time of the last rising edge (ps)
    uint64_t half = 4000;           // half a clock period (ps)
    uint64_t cycles = 0;            // rising edges since the start
    int lsb[L_COUNT] = {};
    int width[L_COUNT] = {};
    uint64_t timeout = 1000000;
    uint64_t rrs_limit = 1000000;
    int rrs_status = 2;
    // The user configuration responder (cocotb_bench.start_user_config_responder's loop).
    sn_user_callback user = nullptr;
    int user_state = 0;             // 0 off, 1 waiting for a request, 2 responding
    bool user_sampled = false;
    bool user_failed = false;
    std::vector<uint32_t> user_words;
    // MSI-X messages taken, one after the other, msg_words words each.
    std::vector<uint32_t> messages;
    int msg_words = 0;
    // Debug hook for tests: the n-th completion (1-based; 0: none) gets `corrupt_xor` XORed
    // into its data and is taken `corrupt_delay` edges late (cfg_cpl ready held low).
    uint64_t corrupt_at = 0;
    uint32_t corrupt_xor = 0;
    uint64_t corrupt_delay = 0;
    uint64_t completions = 0;
};

// -- Clock edges ------------------------------------------------------------------------------

// Every input the harness writes is followed by this: the next falling edge evaluates.
static inline void inputs_set(Sim* s) { s->dirty = true; }

static inline void user_sample(Sim* s) {
    Vsriov_ep_top* t = s->top.get();
    if (s->user_state == 1) {
        s->user_sampled = t->ucfg_req___05Fvalid;
        if (s->user_sampled)
            get_words(t->ucfg_req___05Fpayload, s->user_words.data(),
                      static_cast<int>(s->user_words.size()));
    } else if (s->user_state == 2) {
        s->user_sampled = t->ucfg_res___05Fready;
    }
}

static inline void user_update(Sim* s) {
    Vsriov_ep_top* t = s->top.get();
    if (s->user_state == 1 && s->user_sampled) {
        t->ucfg_req___05Fready = 0; inputs_set(s);
        uint64_t response = 0;
        if (s->user(s->user_words.data(), static_cast<int>(s->user_words.size()), &response))
            s->user_failed = true;
        uint32_t words[2] = {static_cast<uint32_t>(response),
                             static_cast<uint32_t>(response >> 32)};
        put_words(t->ucfg_res___05Fpayload, words, 2); inputs_set(s);
        t->ucfg_res___05Fvalid = 1; inputs_set(s);
        s->user_state = 2;
    } else if (s->user_state == 2 && s->user_sampled) {
        t->ucfg_res___05Fvalid = 0; inputs_set(s);
        t->ucfg_req___05Fready = 1; inputs_set(s);
        s->user_state = 1;
    }
}

// The falling edge: the inputs set since the last rising edge settle (written to the dump at
// that edge's time, as a simulator that sets them in the same time step does), then clk falls.
// Outputs read after this are what the next rising edge samples.
//
// When no input changed since the last eval (the rising edge's), that eval's outputs are
// already the ones the next edge samples: nothing in the design acts on the falling edge, so
// evaluating again would compute the same values (the input-combinational logic, which
// Verilator runs on every eval, is most of a big design's time). Then only what the next
// rising edge needs is done: clk low, and the clock's last sampled value low, which is what
// Verilator's posedge trigger compares with (an eval with clk low would have stored it).
static inline void fall(Sim* s) {
    Vsriov_ep_top* t = s->top.get();
#if VM_TRACE
    if (s->tracing) {
        t->eval();
        s->trace->dump(s->now);
    }
#endif
    t->clk = 0;
    if (s->dirty || s->tracing) {
        t->eval();
        s->dirty = false;
    } else {
        t->rootp->__Vtrigprevexpr___TOP__clk__0 = 0;
    }
#if VM_TRACE
    if (s->tracing) s->trace->dump(s->now + s->half);
#endif
    if (s->user_state) user_sample(s);
}

static inline void rise(Sim* s) {
    Vsriov_ep_top* t = s->top.get();
    s->now += 2 * s->half;
    s->cycles += 1;
    t->clk = 1;
    t->eval();
    if (s->user_state) user_update(s);
}

static inline void tick(Sim* s) {
    fall(s);
    rise(s);
}

// -- Transactions -----------------------------------------------------------------------------

// One config request on the wire: send it, take its completion (as
// cocotb_bench._stream_transaction): returns SN_OK with the completion word and the cycles
// from acceptance to completion.
static int cfg_once(Sim* s, uint64_t request, uint64_t* completion, uint64_t* cycles) {
    Vsriov_ep_top* t = s->top.get();
    bool target = s->corrupt_at && s->completions + 1 == s->corrupt_at;
    bool holding = target && s->corrupt_delay > 0;
    uint64_t held = 0;
    t->cfg_req___05Fpayload = request; inputs_set(s);
    t->cfg_req___05Fvalid = 1; inputs_set(s);
    t->cfg_cpl___05Fready = holding ? 0 : 1; inputs_set(s);
    uint64_t waited = 0;
    for (;;) {
        fall(s);
        bool ready = t->cfg_req___05Fready;
        rise(s);
        if (ready) break;
        if (++waited > s->timeout) return SN_TIMEOUT_ACCEPT;
    }
    t->cfg_req___05Fvalid = 0; inputs_set(s);
    uint64_t count = 0;
    uint64_t word = 0;
    for (;;) {
        ++count;
        fall(s);
        bool valid = t->cfg_cpl___05Fvalid;
        bool taken = valid && t->cfg_cpl___05Fready;
        if (taken) word = t->cfg_cpl___05Fpayload;
        rise(s);
        if (taken) break;
        if (holding && valid && ++held >= s->corrupt_delay) {
            t->cfg_cpl___05Fready = 1; inputs_set(s);
            holding = false;
        }
        if (count > s->timeout) return SN_TIMEOUT_RESPONSE;
    }
    t->cfg_cpl___05Fready = 0; inputs_set(s);
    s->completions += 1;
    if (target) word ^= place(s->corrupt_xor, s->lsb[L_CPL_DATA], s->width[L_CPL_DATA]);
    *completion = word;
    *cycles = count;
    return SN_OK;
}

// A config request with reissues on Request Retry Status (sriov_tb.host.reissue_on_rrs).
// out: status, data, cycles, reissues.
static int cfg(Sim* s, const uint32_t* in, int retry_rrs, uint32_t* out) {
    uint64_t request = place(in[0], s->lsb[L_REQ_TYPE1], s->width[L_REQ_TYPE1])
                     | place(in[1], s->lsb[L_REQ_RID], s->width[L_REQ_RID])
                     | place(in[2], s->lsb[L_REQ_REG], s->width[L_REQ_REG])
                     | place(in[3], s->lsb[L_REQ_BE], s->width[L_REQ_BE])
                     | place(in[4], s->lsb[L_REQ_WRITE], s->width[L_REQ_WRITE])
                     | place(in[5], s->lsb[L_REQ_DATA], s->width[L_REQ_DATA]);
    uint64_t reissues = 0;
    for (;;) {
        uint64_t word = 0, cycles = 0;
        int rc = cfg_once(s, request, &word, &cycles);
        if (rc) return rc;
        if (s->user_failed) return SN_CALLBACK_ERROR;
        uint32_t status = static_cast<uint32_t>(field(word, s->lsb[L_CPL_STATUS],
                                                      s->width[L_CPL_STATUS]));
        if (status != static_cast<uint32_t>(s->rrs_status) || !retry_rrs) {
            out[0] = status;
            out[1] = static_cast<uint32_t>(field(word, s->lsb[L_CPL_DATA], s->width[L_CPL_DATA]));
            out[2] = static_cast<uint32_t>(cycles);
            out[3] = static_cast<uint32_t>(reissues);
            return SN_OK;
        }
        if (++reissues >= s->rrs_limit) return SN_TIMEOUT_RRS;
    }
}

// A message on msg, taken at this edge (msg ready is the caller's), is logged.
static inline bool take_message(Sim* s) {
    Vsriov_ep_top* t = s->top.get();
    if (!(t->msg___05Fvalid && t->msg___05Fready)) return false;
    std::size_t at = s->messages.size();
    s->messages.resize(at + s->msg_words);
    get_words(t->msg___05Fpayload, s->messages.data() + at, s->msg_words);
    return true;
}

// Edges until no message came for `quiet` of them (InterruptDriver._until_quiet); `dropped`
// collects irq_dropped.
static int until_quiet(Sim* s, uint64_t quiet, uint64_t timeout, int* dropped) {
    Vsriov_ep_top* t = s->top.get();
    uint64_t calm = 0, waited = 0;
    while (calm < quiet) {
        fall(s);
        bool message = take_message(s);
        if (dropped && t->irq_dropped) *dropped = 1;
        rise(s);
        calm = message ? 0 : calm + 1;
        if (++waited > timeout) return SN_TIMEOUT_QUIET;
    }
    return SN_OK;
}

extern "C" {

// -- Life cycle -------------------------------------------------------------------------------

// A model; `trace_path` (or NULL) names the VCD to write (a model built with tracing only).
void* sn_new(const char* trace_path, uint64_t half_period_ps) {
    Sim* s = new Sim();
    s->context.reset(new VerilatedContext);
    s->context->fatalOnError(false);
#if VM_TRACE
    bool tracing = trace_path && *trace_path;
    if (tracing) s->context->traceEverOn(true);     // (before the model is made)
#else
    (void)trace_path;
#endif
    // The name "" puts the design's scope at the top of the dump (`sriov_ep_top.clk`), as
    // cocotb's Verilator main does, so both backends' dumps read alike.
    s->top.reset(new Vsriov_ep_top(s->context.get(), ""));
    s->half = half_period_ps;
    s->msg_words = words_of(s->top->msg___05Fpayload);
    s->user_words.resize(words_of(s->top->ucfg_req___05Fpayload));
#if VM_TRACE
    if (tracing) {
        s->trace.reset(new VerilatedVcdC);
        s->top->trace(s->trace.get(), 99);
        s->trace->open(trace_path);
        s->tracing = true;
    }
#endif
    Vsriov_ep_top* t = s->top.get();
    t->clk = 0;
    t->rst = 1; inputs_set(s);
    t->eval();
    return s;
}

// Ends the dump (the state at the last edge is written) and frees the model.
void sn_free(void* handle) {
    Sim* s = static_cast<Sim*>(handle);
    if (!s) return;
#if VM_TRACE
    if (s->trace) {
        if (s->tracing) {
            s->top->eval();
            s->trace->dump(s->now);
        }
        s->trace->close();
    }
#endif
    s->top->final();
    delete s;
}

int sn_traced(void) { return VM_TRACE; }

// Switch the dump off (on = 0) or on again from the next clock edge, e.g. to run many
// transactions untraced and dump only those before a chosen one. Returns SN_BAD_ARGUMENT
// without an open dump.
//
// Off, the model runs nearly as fast as an untraced one (no dump calls; Verilator still marks
// what changed). The dump stays one valid VCD: its times jump over the gap, and the first dump
// after it writes every signal that changed since the last one before it (Verilator compares
// with the values it last wrote and keeps its activity flags until a dump clears them), so a
// viewer shows the state before the gap up to its end, then the right values from there on.
int sn_trace_enable(void* handle, int on) {
    Sim* s = static_cast<Sim*>(handle);
#if VM_TRACE
    if (!s->trace) return SN_BAD_ARGUMENT;
    s->tracing = on != 0;
    return SN_OK;
#else
    (void)s;
    (void)on;
    return SN_BAD_ARGUMENT;
#endif
}

// The field positions (pairs of lsb and width, L_COUNT of them), the Request Retry Status
// value, the timeouts; width checks: the config payloads must fit 64 bits.
int sn_set_layout(void* handle, const int32_t* pairs, int count, int rrs_status,
                  uint64_t timeout, uint64_t rrs_limit) {
    Sim* s = static_cast<Sim*>(handle);
    if (count != L_COUNT) return SN_BAD_ARGUMENT;
    for (int i = 0; i < L_COUNT; ++i) {
        s->lsb[i] = pairs[2 * i];
        s->width[i] = pairs[2 * i + 1];
        if (s->lsb[i] < 0 || s->width[i] < 0 || s->lsb[i] + s->width[i] > 64)
            return SN_BAD_ARGUMENT;
    }
    s->rrs_status = rrs_status;
    s->timeout = timeout;
    s->rrs_limit = rrs_limit;
    return SN_OK;
}

// Widths in 32-bit words of the payload ports, in this order: cfg_req, cfg_cpl, mem_req,
// mem_res, irq, msg, vf_msix_size, vf_msix_size_done, ucfg_req, ucfg_res.
int sn_port_words(void* handle, int32_t* out, int count) {
    Sim* s = static_cast<Sim*>(handle);
    Vsriov_ep_top* t = s->top.get();
    int32_t all[] = {
        words_of(t->cfg_req___05Fpayload), words_of(t->cfg_cpl___05Fpayload),
        words_of(t->mem_req___05Fpayload), words_of(t->mem_res___05Fpayload),
        words_of(t->irq___05Fpayload), words_of(t->msg___05Fpayload),
        words_of(t->vf_msix_size___05Fpayload), words_of(t->vf_msix_size_done),
        words_of(t->ucfg_req___05Fpayload), words_of(t->ucfg_res___05Fpayload),
    };
    int n = static_cast<int>(sizeof(all) / sizeof(all[0]));
    for (int i = 0; i < count && i < n; ++i) out[i] = all[i];
    return n;
}

uint64_t sn_time_ps(void* handle) { return static_cast<Sim*>(handle)->now; }
uint64_t sn_cycles(void* handle) { return static_cast<Sim*>(handle)->cycles; }

// The user logic behind ucfg_req/ucfg_res from now on (NULL: none, nothing answers).
void sn_set_user(void* handle, sn_user_callback callback) {
    Sim* s = static_cast<Sim*>(handle);
    Vsriov_ep_top* t = s->top.get();
    s->user = callback;
    s->user_state = callback ? 1 : 0;
    s->user_failed = false;
    t->ucfg_req___05Fready = callback ? 1 : 0; inputs_set(s);
    t->ucfg_res___05Fvalid = 0; inputs_set(s);
}

// Test hook: the n-th config completion from now (1-based; 0: none) gets `mask` XORed into
// its data and is taken `delay` edges late (cfg_cpl ready held low meanwhile: the design holds
// its completion, so only the cycle count changes). A mutation the checks must catch.
void sn_corrupt_completion(void* handle, uint64_t n, uint32_t mask, uint64_t delay) {
    Sim* s = static_cast<Sim*>(handle);
    s->corrupt_at = n ? s->completions + n : 0;
    s->corrupt_xor = mask;
    s->corrupt_delay = delay;
}

// -- Transactions -----------------------------------------------------------------------------

// Reset as cocotb_bench.reset does: every request channel idle, rst high for `cycles` rising
// edges, then edges until cfg_req is ready.
int sn_reset(void* handle, int cycles) {
    Sim* s = static_cast<Sim*>(handle);
    Vsriov_ep_top* t = s->top.get();
    t->cfg_req___05Fvalid = 0; inputs_set(s);
    t->cfg_cpl___05Fready = 0; inputs_set(s);
    t->mem_req___05Fvalid = 0; inputs_set(s);
    t->mem_res___05Fready = 0; inputs_set(s);
    t->vf_bme_query = 0; inputs_set(s);
    t->irq___05Fvalid = 0; inputs_set(s);
    t->msg___05Fready = 0; inputs_set(s);
    t->vf_msix_size___05Fvalid = 0; inputs_set(s);
    t->ucfg_req___05Fready = 0; inputs_set(s);
    t->ucfg_res___05Fvalid = 0; inputs_set(s);
    int user = s->user_state;
    s->user_state = 0;
    t->rst = 1; inputs_set(s);
    for (int i = 0; i < cycles; ++i) tick(s);
    t->rst = 0; inputs_set(s);
    uint64_t waited = 0;
    for (;;) {
        fall(s);
        bool ready = t->cfg_req___05Fready;
        rise(s);
        if (ready) break;
        if (++waited > s->timeout) return SN_TIMEOUT_ACCEPT;
    }
    if (user) {
        s->user_state = 1;
        t->ucfg_req___05Fready = 1; inputs_set(s);
    }
    return SN_OK;
}

// `cycles` rising edges with the inputs as they are.
int sn_idle(void* handle, uint64_t cycles) {
    Sim* s = static_cast<Sim*>(handle);
    for (uint64_t i = 0; i < cycles; ++i) tick(s);
    return s->user_failed ? SN_CALLBACK_ERROR : SN_OK;
}

// One config request (type1, rid, reg, be, write, data); out = status, data, cycles, Request
// Retry Status reissues.
int sn_cfg(void* handle, uint32_t type1, uint32_t rid, uint32_t reg, uint32_t be, uint32_t write,
           uint32_t data, int retry_rrs, uint32_t* out) {
    const uint32_t in[6] = {type1, rid, reg, be, write, data};
    return cfg(static_cast<Sim*>(handle), in, retry_rrs, out);
}

// `count` config requests back to back (6 words in, 4 words out each, as sn_cfg); stops at
// the first that fails and returns its status, with `*done` the number completed.
int sn_cfg_batch(void* handle, const uint32_t* in, int64_t count, int retry_rrs, uint32_t* out,
                 int64_t* done) {
    Sim* s = static_cast<Sim*>(handle);
    for (int64_t i = 0; i < count; ++i) {
        int rc = cfg(s, in + 6 * i, retry_rrs, out + 4 * i);
        if (rc) {
            *done = i;
            return rc;
        }
    }
    *done = count;
    return SN_OK;
}

// One memory request (the packed mem_req payload) and its decode (the mem_res payload);
// `*cycles` from acceptance to the result.
int sn_mem(void* handle, const uint32_t* request, int nreq, uint32_t* result, int nres,
           uint64_t timeout, uint64_t* cycles) {
    Sim* s = static_cast<Sim*>(handle);
    Vsriov_ep_top* t = s->top.get();
    put_words(t->mem_req___05Fpayload, request, nreq); inputs_set(s);
    t->mem_req___05Fvalid = 1; inputs_set(s);
    t->mem_res___05Fready = 1; inputs_set(s);
    uint64_t waited = 0;
    for (;;) {
        fall(s);
        bool ready = t->mem_req___05Fready;
        rise(s);
        if (ready) break;
        if (++waited > timeout) return SN_TIMEOUT_ACCEPT;
    }
    t->mem_req___05Fvalid = 0; inputs_set(s);
    uint64_t count = 0;
    for (;;) {
        ++count;
        fall(s);
        bool valid = t->mem_res___05Fvalid;
        if (valid) get_words(t->mem_res___05Fpayload, result, nres);
        rise(s);
        if (valid) break;
        if (count > timeout) return SN_TIMEOUT_RESPONSE;
    }
    t->mem_res___05Fready = 0; inputs_set(s);
    *cycles = count;
    return s->user_failed ? SN_CALLBACK_ERROR : SN_OK;
}

// Take MSI-X messages until none came for `quiet` edges (InterruptDriver.settle).
int sn_settle(void* handle, uint64_t quiet, uint64_t timeout) {
    Sim* s = static_cast<Sim*>(handle);
    s->top->msg___05Fready = 1;
    int rc = until_quiet(s, quiet, timeout, nullptr);
    s->top->msg___05Fready = 0;
    return rc;
}

// An interrupt request (the packed irq payload), then messages until quiet; `*dropped` is set
// if irq_dropped pulsed meanwhile. The messages taken are logged (sn_messages).
int sn_interrupt(void* handle, const uint32_t* request, int nreq, uint64_t quiet,
                 uint64_t timeout, int* dropped) {
    Sim* s = static_cast<Sim*>(handle);
    Vsriov_ep_top* t = s->top.get();
    *dropped = 0;
    t->msg___05Fready = 1; inputs_set(s);
    put_words(t->irq___05Fpayload, request, nreq); inputs_set(s);
    t->irq___05Fvalid = 1; inputs_set(s);
    uint64_t waited = 0;
    for (;;) {
        fall(s);
        take_message(s);
        if (t->irq_dropped) *dropped = 1;
        bool ready = t->irq___05Fready;
        rise(s);
        ++waited;
        if (ready) break;
        if (waited > timeout) return SN_TIMEOUT_ACCEPT;
    }
    t->irq___05Fvalid = 0; inputs_set(s);
    int rc = until_quiet(s, quiet, timeout, dropped);
    t->msg___05Fready = 0; inputs_set(s);
    return rc;
}

// How many messages are logged, and copies `count` of them from `first` into `out`.
int64_t sn_messages(void* handle, int64_t first, int64_t count, uint32_t* out) {
    Sim* s = static_cast<Sim*>(handle);
    int64_t total = static_cast<int64_t>(s->messages.size()) / (s->msg_words ? s->msg_words : 1);
    for (int64_t i = 0; i < count && first + i < total; ++i)
        std::memcpy(out + i * s->msg_words, s->messages.data() + (first + i) * s->msg_words,
                    sizeof(uint32_t) * s->msg_words);
    return total;
}

// A VF's MSI-X Table Size (the packed vf_msix_size payload): *ok from vf_msix_size_done.
int sn_vf_msix_count(void* handle, const uint32_t* request, int nreq, uint64_t timeout,
                     int* ok) {
    Sim* s = static_cast<Sim*>(handle);
    Vsriov_ep_top* t = s->top.get();
    put_words(t->vf_msix_size___05Fpayload, request, nreq); inputs_set(s);
    t->vf_msix_size___05Fvalid = 1; inputs_set(s);
    bool accepted = false;
    uint64_t waited = 0;
    for (;;) {
        fall(s);
        bool ready = t->vf_msix_size___05Fready;
        uint64_t done = t->vf_msix_size_done;
        rise(s);
        if (accepted && field(done, s->lsb[L_DONE_VALID], s->width[L_DONE_VALID])) {
            *ok = static_cast<int>(field(done, s->lsb[L_DONE_OK], s->width[L_DONE_OK]));
            return SN_OK;
        }
        if (ready && !accepted) {
            accepted = true;
            t->vf_msix_size___05Fvalid = 0; inputs_set(s);
        }
        if (++waited > timeout) return SN_TIMEOUT_RESPONSE;
    }
}

// -- Measurement ------------------------------------------------------------------------------

// The bare loop the batch figures are compared with: `count` copies of one config request
// (`request`, the packed cfg_req payload), back to back, each waited for, with nothing else:
// no responder, no tracing, no status checks, clk toggled and evaluated in place. Returns the
// requests completed; `*seconds` the wall time, `*edges` the rising edges it took.
int64_t sn_bench_loop(void* handle, int64_t count, uint64_t request, double* seconds,
                      uint64_t* edges) {
    Sim* s = static_cast<Sim*>(handle);
    Vsriov_ep_top* t = s->top.get();
    uint64_t n = 0;
    int64_t done = 0;
    auto start = std::chrono::steady_clock::now();
    t->cfg_req___05Fpayload = request; inputs_set(s);
    t->cfg_cpl___05Fready = 1; inputs_set(s);
    for (; done < count; ++done) {
        t->cfg_req___05Fvalid = 1; inputs_set(s);
        for (;;) {
            t->clk = 0;
            t->eval();
            bool ready = t->cfg_req___05Fready;
            t->clk = 1;
            t->eval();
            ++n;
            if (ready) break;
        }
        t->cfg_req___05Fvalid = 0; inputs_set(s);
        for (;;) {
            t->clk = 0;
            t->eval();
            bool valid = t->cfg_cpl___05Fvalid;
            t->clk = 1;
            t->eval();
            ++n;
            if (valid) break;
        }
    }
    t->cfg_cpl___05Fready = 0; inputs_set(s);
    *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    *edges = n;
    s->now += 2 * s->half * n;
    s->cycles += n;
    return done;
}

}  // extern "C"
