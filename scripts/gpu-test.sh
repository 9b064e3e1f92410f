#!/usr/bin/env bash
# The CUDA backend's tests and benchmarks on a machine with a GPU, in one command; logs go to $OUT.
#   scripts/gpu-test.sh [build] [ops] [memcheck] [graphs] [tp] [tpmodel] [tpbench] [e2e] [long] [engine] [serve]
#                       [modelopt] [bench] [trace] [profile]
#   (no argument: all). long: prompts of 200-700 tokens, CUDA vs CPU (tests/cuda/test_e2e_long.py);
# graphs: decode with CUDA graphs bitwise equal to decode without (tests/cuda/test_cuda_graphs.c);
# tp: the tensor-parallel all-reduce over up to 4 GPUs (tests/cuda/test_cuda_tp.c; one GPU: skipped);
# tpmodel: fixture models split over 2 (and 4) GPUs vs transformers, the engine, glint generate and
# glint serve on them; tpbench: the NVFP4 preset, 12 layers on one GPU and TP_LAYERS (12 per GPU) split over all of them;
# engine: the server engine on CUDA (batched decode, MTP speculation, retraction: tokens identical to
# plain decoding); serve: glint serve --backend cuda with the demo model (tests/cuda/test_serve_cuda.py);
# trace (not in the default list): where a decode step's time goes in the replayed graphs, side streams
# included, and what the host does between steps (GLINT_CUDA_KERNEL_TRACE: CUPTI's kernel and runtime
# records; tools/cuda/trace_summary.py); profile (not in the default list either): Nsight Compute's
# view of the hottest decode kernels (time, DRAM throughput, issue rate, occupancy, stall samples);
# modelopt: tools/quant/crosscheck_modelopt.py against ModelOpt's NVFP4 quantizer
# (carry .whl, where scripts/gpu-deps.sh download puts the nvidia-modelopt wheel).
# The machine has the CUDA toolkit but no Debian -dev packages: .debs/ (scripts/gpu-deps.sh download,
# carried along) is unpacked into /tmp/deps and CMake is pointed at it.
# PACK=1: at the end every file in $OUT but summary.txt goes into $OUT/logs.tgz (the device tool brings
# back only a few files per call; not when the build fails: its log's tail is printed instead).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/glint-gpu-out}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
steps=${*:-build ops memcheck graphs tp tpmodel e2e long engine serve modelopt bench tpbench}
want() { [[ " $steps " == *" $1 "* ]]; }
status=0
note() { echo "== $*" | tee -a "$OUT/summary.txt"; }

if want build; then
    nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
    scripts/gpu-deps.sh unpack /tmp/deps >/dev/null
    libdir=/tmp/deps/usr/lib/x86_64-linux-gnu
    export PKG_CONFIG_SYSROOT_DIR=/tmp/deps
    export PKG_CONFIG_LIBDIR=$libdir/pkgconfig:/tmp/deps/usr/share/pkgconfig
    extra=()
    if ! command -v pkg-config >/dev/null; then  # the unpacked pkgconf
        export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        extra+=(-DPKG_CONFIG_EXECUTABLE=/tmp/deps/usr/bin/pkgconf)
    fi
    start=$(date +%s)
    if cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGLINT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 "${extra[@]}" \
        >"$OUT/build.log" 2>&1 && cmake --build "$BUILD" -j16 >>"$OUT/build.log" 2>&1; then
        note "build ok in $(($(date +%s) - start)) s"
    else
        note "build FAILED (build.log)"
        tail -30 "$OUT/build.log"
        exit 1
    fi
fi

if want ops; then
    # default: the precise tensor-core prefill GEMM (T > 64, x as hi + lo BF16), held to the FP32 tolerance
    "$BUILD/tests/cuda/test_cuda_ops" >"$OUT/ops.log" 2>&1 && note "ops ok: $(tail -1 "$OUT/ops.log")" ||
        { status=1; note "ops FAILED: $(tail -1 "$OUT/ops.log")"; grep FAIL "$OUT/ops.log" | head -20; }
    # again with: the FP32 SIMT kernel for everything (TC=0); the fast BF16-activation GEMM (TC=bf16,
    # tolerance 1e-2); glint's own precise GEMM instead of cuBLAS (CUBLAS=0); the FP32 MLA attention
    # (ATTEND_TC=0; by default the tensor-core kernel where the shapes allow); plain launches instead of
    # chained ones (PDL=0: what a card before sm_90 gets); the FP32 indexer scores for GLM-5's shape
    # (INDEXER_TC=0);
    # BF16 GEMVs of T > 1 rows on reordered x (GEMV_PERMUTE=1, off by default: no gain), alone and with
    # the 8-row kernel for every T > 1 (GEMV_WIDTHS=0; by default 2 and 4 rows have kernels of their own);
    # small uploads as blocking copies (ASYNC_UPLOAD=0; by default queued from pinned memory); the
    # multi-block top-k's first pass in a launch of its own (TOPK_FUSED=0; by default inside the
    # tensor-core scores); the indexer's queries roped by a launch of their own (MATMUL_ROPE=0; by default
    # their GEMV rotates them before the write); the multi-block top-k's passes in a launch each
    # (TOPK_RESIDENT=0; by default one launch of resident blocks, which TOPK_FUSED=0 runs from its first
    # pass). Experiments, off by default: two accumulator chains in the NVFP4 expert kernels
    # (MMA_CHAINS=2,2; default 1,1), half the warps splitting K in them (MMA_SPLIT=2,1; default 4,2),
    # their weights through a ring in shared memory (MMA_STAGED=1),
    # three accumulators for the tensor-core attention's scores (ATTEND_CHAINS=1), four key tile buffers
    # in it (ATTEND_BUFS=4; default 2), the indexer scores' long-context variant with more loads in
    # flight (INDEXER_LONG=2,8 and 4,4; default 4,2). A setting of several switches joins them with '+'.
    # OPS_MODES="SETTING ..." runs those instead of this list (e.g. only the experiments; ~30 s each).
    all_modes="GLINT_CUDA_TC=0 GLINT_CUDA_TC=bf16 GLINT_CUDA_CUBLAS=0 GLINT_CUDA_ATTEND_TC=0 GLINT_CUDA_PDL=0
        GLINT_CUDA_INDEXER_TC=0 GLINT_CUDA_GEMV_PERMUTE=1 GLINT_CUDA_GEMV_WIDTHS=0
        GLINT_CUDA_GEMV_PERMUTE=1+GLINT_CUDA_GEMV_WIDTHS=0 GLINT_CUDA_ASYNC_UPLOAD=0 GLINT_CUDA_TOPK_FUSED=0
        GLINT_CUDA_MATMUL_ROPE=0 GLINT_CUDA_TOPK_RESIDENT=0 GLINT_CUDA_TOPK_RESIDENT=0+GLINT_CUDA_TOPK_FUSED=0
        GLINT_CUDA_MMA_CHAINS=2,2 GLINT_CUDA_MMA_SPLIT=2,1 GLINT_CUDA_MMA_STAGED=1 GLINT_CUDA_ATTEND_CHAINS=1
        GLINT_CUDA_ATTEND_BUFS=4 GLINT_CUDA_INDEXER_LONG=2,8 GLINT_CUDA_INDEXER_LONG=4,4"
    for setting in ${OPS_MODES-$all_modes}; do
        log="$OUT/ops_${setting//GLINT_CUDA_/}.log" && log=${log//=/_} && log=${log//+/_} && log=${log//,/_}  # ops_TC_0.log, ...
        env ${setting//+/ } "$BUILD/tests/cuda/test_cuda_ops" >"$log" 2>&1 && note "ops ($setting) ok: $(tail -1 "$log")" ||
            { status=1; note "ops ($setting) FAILED: $(tail -1 "$log")"; grep FAIL "$log" | head -20; }
    done
fi

if want memcheck; then
    compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD/tests/cuda/test_cuda_ops" --quick >"$OUT/memcheck.log" 2>&1
    rc=$?
    [ $rc = 0 ] && note "memcheck clean: $(grep -m1 'ERROR SUMMARY' "$OUT/memcheck.log")" ||
        { status=1; note "memcheck rc $rc: $(grep -m1 'ERROR SUMMARY' "$OUT/memcheck.log")"; tail -30 "$OUT/memcheck.log"; }
fi

if want graphs; then
    "$BUILD/tests/cuda/test_cuda_graphs" models/demo >"$OUT/graphs.log" 2>&1 && note "graphs ok: $(tail -1 "$OUT/graphs.log")" ||
        { status=1; note "graphs FAILED: $(tail -1 "$OUT/graphs.log")"; grep FAIL "$OUT/graphs.log" | head -20; }
fi

if want tp; then  # needs 2 GPUs or more; a stuck all-reduce gives up after 20 s, the timeout is for the rest
    timeout 900 "$BUILD/tests/cuda/test_cuda_tp" >"$OUT/tp.log" 2>&1 && note "tp $(tail -1 "$OUT/tp.log")" ||
        { status=1; note "tp FAILED: $(tail -1 "$OUT/tp.log")"; grep -E "FAIL|rank" "$OUT/tp.log" | head -20; }
    grep "all-reduce of" "$OUT/tp.log" | tee -a "$OUT/summary.txt"
    # the last rank skips an all-reduce: the others give up after the kernel's timeout and say so
    timeout 300 "$BUILD/tests/cuda/test_cuda_tp" --stall >"$OUT/tp_stall.log" 2>&1 && note "tp --stall $(tail -1 "$OUT/tp_stall.log")" ||
        { status=1; note "tp --stall FAILED: $(tail -1 "$OUT/tp_stall.log")"; grep -E "FAIL|rank" "$OUT/tp_stall.log" | head -20; }
fi

if want tpmodel; then  # the model split over the GPUs (2, and 4 when there are 4) against transformers, the engine
    gpus=$(nvidia-smi -L | wc -l)
    models=tests/fixtures/models quant=tests/fixtures/quant
    for tp in 2 4; do
        [ "$gpus" -ge "$tp" ] || continue
        list="$models/tiny-fsf-f32 $models/tiny-group-bf16 $models/tiny-nonorm-yarn-sharded $models/tiny-allf-override $quant/q-base-f32"
        [ $tp = 2 ] && list="$list $quant/q-nvfp4-modelopt-experts $quant/q-nvfp4-modelopt-all $quant/q-nvfp4-ct"
        GLINT_TEST_BACKEND=cuda GLINT_TEST_TP=$tp "$BUILD/tests/model_forward" $list >"$OUT/tpmodel$tp.log" 2>&1 &&
            note "tensor parallel $tp GPUs vs transformers: $(tail -1 "$OUT/tpmodel$tp.log")" ||
            { status=1; note "tensor parallel $tp GPUs vs transformers FAILED"; grep -B3 FAIL "$OUT/tpmodel$tp.log" | head -20; }
        GLINT_TEST_BACKEND=cuda GLINT_TEST_TP=$tp "$BUILD/tests/demo_spec_engine" models/demo tests/fixtures/demo \
            >"$OUT/tpengine$tp.log" 2>&1 && note "engine on $tp GPUs ok: $(tail -1 "$OUT/tpengine$tp.log")" ||
            { status=1; note "engine on $tp GPUs FAILED"; grep -v "^speculative" "$OUT/tpengine$tp.log" | head -20; }
        want="$("$BUILD/glint" generate -m models/demo --prompt "The capital of France is" -n 24 --temperature 0 --print-ids --backend cpu 2>/dev/null | head -1)"
        got="$("$BUILD/glint" generate -m models/demo --prompt "The capital of France is" -n 24 --temperature 0 --print-ids --backend cuda --tp $tp 2>"$OUT/tpgen$tp.log" | head -1)"
        [ -n "$want" ] && [ "$want" = "$got" ] && note "glint generate --backend cuda --tp $tp == CPU: $got" ||
            { status=1; note "glint generate --backend cuda --tp $tp: '$got', CPU '$want'"; tail -3 "$OUT/tpgen$tp.log"; }
        GLINT_SERVE_EXTRA="--tp $tp" python3 tests/cuda/test_serve_cuda.py "$BUILD/glint" . >"$OUT/tpserve$tp.log" 2>&1 &&
            note "serve on $tp GPUs ok: $(tail -1 "$OUT/tpserve$tp.log")" ||
            { status=1; note "serve on $tp GPUs FAILED: $(tail -1 "$OUT/tpserve$tp.log")"; grep -E "FAIL|rror" "$OUT/tpserve$tp.log" | head; }
    done
fi

if want tpbench; then  # the NVFP4 preset: 12 layers on one GPU, TP_LAYERS (12 per GPU) split over every GPU
    gpus=$(nvidia-smi -L | wc -l)
    {
        for tp in 1 $gpus; do
            layers=12
            [ $tp -gt 1 ] && layers=${TP_LAYERS:-$((12 * tp < 78 ? 12 * tp : 78))}
            echo "### glint bench --synthetic glm-5.1-478b-nvfp4 --layers $layers --ctx 256,4096,131072 --backend cuda --tp $tp"
            "$BUILD/glint" bench --synthetic glm-5.1-478b-nvfp4 --layers "$layers" --ctx 256,4096,131072 --backend cuda \
                --tp $tp
        done
    } >"$OUT/tpbench.log" 2>&1 || status=1
    note "tensor-parallel bench:"
    grep -v "^bench: making" "$OUT/tpbench.log" | tee -a "$OUT/summary.txt"
fi

if want e2e; then
    python3 tests/cuda/test_e2e.py "$BUILD/glint" >"$OUT/e2e.log" 2>&1 && note "e2e ok: $(tail -1 "$OUT/e2e.log")" ||
        { status=1; note "e2e FAILED: $(tail -1 "$OUT/e2e.log")"; grep -v " ok" "$OUT/e2e.log" | head -20; }
fi

if want long; then  # prompts of 200-700 tokens: the (default, precise) tensor-core prefill path end to end
    python3 tests/cuda/test_e2e_long.py "$BUILD/glint" >"$OUT/e2e_long.log" 2>&1 && note "long prompts ok: $(tail -1 "$OUT/e2e_long.log")" ||
        { status=1; note "long prompts FAILED: $(tail -1 "$OUT/e2e_long.log")"; grep -v " ok;" "$OUT/e2e_long.log" | head -20; }
    grep "prompt tokens" "$OUT/e2e_long.log" | tee -a "$OUT/summary.txt"
    # The fast tensor-core prefill GEMM (GLINT_CUDA_TC=bf16), reported, not gating: its BF16 activations
    # flip routing / top-k decisions of the small test models on long prompts.
    GLINT_CUDA_TC=bf16 python3 tests/cuda/test_e2e_long.py "$BUILD/glint" >"$OUT/e2e_long_bf16.log" 2>&1
    note "long prompts with GLINT_CUDA_TC=bf16 (not gating): $(tail -1 "$OUT/e2e_long_bf16.log")"
    grep "prompt tokens" "$OUT/e2e_long_bf16.log" | tee -a "$OUT/summary.txt"
fi

if want engine; then
    GLINT_TEST_BACKEND=cuda "$BUILD/tests/demo_spec_engine" models/demo tests/fixtures/demo >"$OUT/engine.log" 2>&1 &&
        note "engine ok: $(tail -1 "$OUT/engine.log")" ||
        { status=1; note "engine FAILED"; grep -v "^speculative" "$OUT/engine.log" | head -20; }
    grep "^speculative" "$OUT/engine.log" | tee -a "$OUT/summary.txt"
fi

if want serve; then
    python3 tests/cuda/test_serve_cuda.py "$BUILD/glint" . >"$OUT/serve.log" 2>&1 && note "serve ok: $(tail -1 "$OUT/serve.log")" ||
        { status=1; note "serve FAILED: $(tail -1 "$OUT/serve.log")"; grep -E "FAIL|Error|error" "$OUT/serve.log" | head -20; }
    grep "drafts" "$OUT/serve.log" | tee -a "$OUT/summary.txt"
fi

if want modelopt; then
    wheel=$(ls .whl/nvidia_modelopt-*.whl 2>/dev/null | head -1)
    if [ -z "$wheel" ]; then
        note "modelopt: no wheel in .whl/ (scripts/gpu-deps.sh download; carry .whl)"
    else
        rm -rf /tmp/modelopt && mkdir -p /tmp/modelopt && python3 -m zipfile -e "$wheel" /tmp/modelopt
        PYTHONPATH=/tmp/modelopt python3 tools/quant/crosscheck_modelopt.py >"$OUT/modelopt.log" 2>&1 &&
            note "modelopt cross-check ($(basename "$wheel")): $(tail -1 "$OUT/modelopt.log")" ||
            { status=1; note "modelopt cross-check FAILED: $(tail -3 "$OUT/modelopt.log")"; }
    fi
fi

if want trace; then
    GLINT_CUDA_KERNEL_TRACE="$OUT/trace.csv" "$BUILD/glint" bench --synthetic glm-5.1-478b-nvfp4 --layers 12 \
        --ctx 4096 --backend cuda >"$OUT/trace_bench.log" 2>&1
    python3 tools/cuda/trace_summary.py "$OUT/trace.csv" --timeline --host >"$OUT/trace.txt" 2>&1 &&
        note "trace: $(sed -n 2p "$OUT/trace.txt")" ||
        { status=1; note "trace FAILED"; tail -5 "$OUT/trace_bench.log" "$OUT/trace.txt"; }
fi

if want profile; then
    # Nsight Compute on the decode's hottest kernels (not in the default list): each one's time, DRAM
    # throughput, issue rate, eligible warps, occupancy and stall samples over a few launches, the NVFP4
    # preset with 5 layers (3 dense, 2 MoE: 3 would have no experts) at PROFILE_CTX (4096), graphs off so
    # each launch is its own. PROFILE_KERNELS (regexes of kernel names), PROFILE_SKIP and PROFILE_COUNT
    # choose the launches (a kernel launched fewer times than the skip prints nothing).
    stalls="long_scoreboard short_scoreboard wait math_pipe_throttle mio_throttle barrier not_selected selected"
    stalls+=" lg_throttle dispatch_stall no_instructions branch_resolving"
    metrics=smsp__pcsamp_sample_count
    for st in $stalls; do metrics+=",smsp__pcsamp_warps_issue_stalled_$st"; done
    for k in ${PROFILE_KERNELS:-gemv_vec moe_nvfp4_mma attend_tc indexer_scores_tc}; do
        log="$OUT/profile_${k//[^a-zA-Z0-9_]/_}.txt"
        if GLINT_CUDA_GRAPHS=0 ncu --clock-control none -k "regex:$k" --launch-skip "${PROFILE_SKIP:-6}" \
            --launch-count "${PROFILE_COUNT:-4}" --section SpeedOfLight --section LaunchStats --section Occupancy \
            --section SchedulerStats --metrics "$metrics" "$BUILD/glint" bench --synthetic glm-5.1-478b-nvfp4 \
            --backend cuda --layers 5 --ctx "${PROFILE_CTX:-4096}" --decode-tokens 4 >"$log" 2>&1; then
            note "profile $k (ctx ${PROFILE_CTX:-4096}):"
            grep -E "Stream [0-9]+, Device|Duration|DRAM Throughput|Issued Warp Per Scheduler|Eligible Warps Per \
Scheduler|Achieved Occupancy|Registers Per Thread|stalled_|sample_count" "$log" |
                sed -E 's/^ *void ([^(]*)\(.*\) (\([0-9, ]+\)x\([0-9, ]+\)).*/\1 \2/; s/ +/ /g' | tee -a "$OUT/summary.txt"
        else
            status=1
            note "profile $k FAILED ($log)"
            tail -5 "$log"
        fi
    done
fi

if want bench; then
    # BENCH_LAYERS: layers of the NVFP4 flagship preset (3 dense + the rest MoE; 12 fit an 80 GB card
    # with the 128k caches).
    layers=${BENCH_LAYERS:-12}
    {
        echo "### glint bench --kernels --backend cuda"
        "$BUILD/glint" bench --kernels --backend cuda
        echo "### glint bench --synthetic glm-5.1-478b-nvfp4 --layers $layers --ctx 256,4096,16384,65536,131072 --backend cuda"
        "$BUILD/glint" bench --synthetic glm-5.1-478b-nvfp4 --layers "$layers" --ctx 256,4096,16384,65536,131072 \
            --backend cuda
        echo "### the speculative step: 1-4 drafts (verify rows + chained MTP drafts) against a plain step, at 4k"
        "$BUILD/glint" bench --synthetic glm-5.1-478b-nvfp4 --layers "$layers" --ctx 4096 --speculative-num-steps 4 \
            --backend cuda
        echo "### the same with GLINT_CUDA_GRAPHS=0 (every op launched every step)"
        GLINT_CUDA_GRAPHS=0 "$BUILD/glint" bench --synthetic glm-5.1-478b-nvfp4 --layers "$layers" \
            --ctx 256,4096,16384,65536,131072 --backend cuda
        echo "### glint bench --synthetic glm-5.1-bf16 --layers 4 (32 experts) --ctx 256,4096 --backend cuda"
        "$BUILD/glint" bench --synthetic glm-5.1-bf16 --layers 4 --json-model-override-args '{"n_routed_experts":32}' \
            --ctx 256,4096 --backend cuda
        echo "### the NVFP4 preset at ctx 4096 with GLINT_CUDA_PROFILE=1 (each op synchronized: where the time goes)"
        GLINT_CUDA_PROFILE=1 "$BUILD/glint" bench --synthetic glm-5.1-478b-nvfp4 --layers 5 --ctx 4096 --backend cuda 2>&1 |
            grep -v "^bench: making" | head -40
    } >"$OUT/bench.log" 2>&1 || status=1
    note "bench:"
    cat "$OUT/bench.log" | grep -v "^bench: making" | tee -a "$OUT/summary.txt"
fi
cat "$OUT/summary.txt"
if [ "${PACK:-0}" != 0 ]; then
    (cd "$OUT" && find . -type f ! -name summary.txt ! -name logs.tgz -print0 | tar czf logs.tgz --null -T - --remove-files)
fi
exit $status
