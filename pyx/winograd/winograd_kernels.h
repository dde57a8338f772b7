/* The C kernels of the cython-winograd backend, float and double from one template each
 * (winograd_transforms.h, winograd_gemm.h), included twice with the names #defined. */
#ifndef CONVREG_WINOGRAD_KERNELS_H
#define CONVREG_WINOGRAD_KERNELS_H

#include "winograd_simd.h"

/* Scalar loops here are short: keep them inline rather than libc memset/memcpy calls. */
#pragma GCC push_options
#pragma GCC optimize("no-tree-loop-distribute-patterns")

#define WT float
#define WV crw_vf
#define WVL CRW_VLF
#define WV8 crw_v8f
#define CRW_TAIL_KERNEL crw_tail_kernel_f
#define CRW_TAIL_RUN crw_tail_run_f
#define CRW_LOADU crw_loadu_f
#define CRW_STOREU crw_storeu_f
#define CRW_INPUT crw_input_f
#define CRW_INPUT2B crw_input2b_f
#define CRW_INPUT2B_H crw_input2b_h_f
#define CRW_INPUT_H crw_input_h_f
#define CRW_BT44 crw_bt44_f
#define CRW_OUTPUT crw_output_f
#define CRW_OUTSTORE crw_outstore_f
#define CRW_OUTSTOREB crw_outstoreb_f
#define CRW_KERNEL crw_kernel_f
#define CRW_GEMM crw_gemm_f
#define CRW_WTRANS crw_wtrans_f
#define CRW_WTRANS_AL crw_wtrans_al_f
#define CRW_GATHER9 crw_gather9_f
#define CRW_V8_STORE crw_v8_store_f
#define CRW_DEINT crw_deint_f
#define CRW_DEINTB crw_deintb_f
#define CRW_ROW2 crw_row2_f
#define CRW_INTER crw_inter_f
#include "winograd_transforms.h"
#include "winograd_gemm.h"
#undef WT
#undef WV
#undef WVL
#undef WV8
#undef CRW_TAIL_KERNEL
#undef CRW_TAIL_RUN
#undef CRW_LOADU
#undef CRW_STOREU
#undef CRW_INPUT
#undef CRW_INPUT2B
#undef CRW_INPUT2B_H
#undef CRW_INPUT_H
#undef CRW_BT44
#undef CRW_OUTPUT
#undef CRW_OUTSTORE
#undef CRW_OUTSTOREB
#undef CRW_KERNEL
#undef CRW_GEMM
#undef CRW_WTRANS
#undef CRW_WTRANS_AL
#undef CRW_GATHER9
#undef CRW_V8_STORE
#undef CRW_DEINT
#undef CRW_DEINTB
#undef CRW_ROW2
#undef CRW_INTER

#define WT double
#define WV crw_vd
#define WVL CRW_VLD
#define WV8 crw_v8d
#define CRW_TAIL_KERNEL crw_tail_kernel_d
#define CRW_TAIL_RUN crw_tail_run_d
#define CRW_LOADU crw_loadu_d
#define CRW_STOREU crw_storeu_d
#define CRW_INPUT crw_input_d
#define CRW_INPUT2B crw_input2b_d
#define CRW_INPUT2B_H crw_input2b_h_d
#define CRW_INPUT_H crw_input_h_d
#define CRW_BT44 crw_bt44_d
#define CRW_OUTPUT crw_output_d
#define CRW_OUTSTORE crw_outstore_d
#define CRW_OUTSTOREB crw_outstoreb_d
#define CRW_KERNEL crw_kernel_d
#define CRW_GEMM crw_gemm_d
#define CRW_WTRANS crw_wtrans_d
#define CRW_WTRANS_AL crw_wtrans_al_d
#define CRW_GATHER9 crw_gather9_d
#define CRW_V8_STORE crw_v8_store_d
#define CRW_DEINT crw_deint_d
#define CRW_DEINTB crw_deintb_d
#define CRW_ROW2 crw_row2_d
#define CRW_INTER crw_inter_d
#include "winograd_transforms.h"
#include "winograd_gemm.h"
#undef WT
#undef WV
#undef WVL
#undef WV8
#undef CRW_TAIL_KERNEL
#undef CRW_TAIL_RUN
#undef CRW_LOADU
#undef CRW_STOREU
#undef CRW_INPUT
#undef CRW_INPUT2B
#undef CRW_INPUT2B_H
#undef CRW_INPUT_H
#undef CRW_BT44
#undef CRW_OUTPUT
#undef CRW_OUTSTORE
#undef CRW_OUTSTOREB
#undef CRW_KERNEL
#undef CRW_GEMM
#undef CRW_WTRANS
#undef CRW_WTRANS_AL
#undef CRW_GATHER9
#undef CRW_V8_STORE
#undef CRW_DEINT
#undef CRW_DEINTB
#undef CRW_ROW2
#undef CRW_INTER

#pragma GCC pop_options

static inline const char *crw_isa(void) { return CRW_ISA; }

#endif
