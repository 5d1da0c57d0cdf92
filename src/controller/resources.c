/* The inferencecache.io/v1alpha1 resources the controller reads and writes (REST identities for
 * lib/kube). Kept apart from main.c so unit tests can link the reconciler files without main(). */
#include "controller.h"

const ic_kube_res_t ctl_res_cachebackends = {"inferencecache.io", "v1alpha1", "cachebackends",
                                             "CacheBackend", true};
const ic_kube_res_t ctl_res_cachepolicies = {"inferencecache.io", "v1alpha1", "cachepolicies",
                                             "CachePolicy", true};
const ic_kube_res_t ctl_res_cachetenants = {"inferencecache.io", "v1alpha1", "cachetenants",
                                            "CacheTenant", true};
const ic_kube_res_t ctl_res_cacheindices = {"inferencecache.io", "v1alpha1", "cacheindices",
                                            "CacheIndex", false};
