/* The one clock: monotonic seconds for every timing figure zfold reports. */
#ifndef ZF_CLOCK_H
#define ZF_CLOCK_H

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds on the monotonic clock since an arbitrary origin. */
double zf_now(void);

#ifdef __cplusplus
}
#endif

#endif
