/* edgepbx's PJSIP limits. The feature server is a B2BUA: every bridged call is two pjsua calls
 * (legs) plus a recorder, and each leg holds an RTP and an RTCP socket. The sizes below let one
 * process carry 512 bridged, recorded calls; memory is allocated per call in use, not up front,
 * except pjsua's call table (a few MB at this size). */
#define PJSUA_MAX_CALLS            1024
#define PJSUA_MAX_ACC              64      /* the office account plus one per trunk */
#define PJSUA_MAX_PLAYERS          1024    /* greetings, ringback, music on hold */
#define PJSUA_MAX_RECORDERS        1024
#define PJSUA_MAX_CONF_PORTS       3072
#define PJ_IOQUEUE_MAX_HANDLES     4096    /* epoll: RTP + RTCP per leg, SIP, a margin */
#define PJSIP_MAX_TSX_COUNT        (16 * 1024 - 1)
#define PJSIP_MAX_DIALOG_COUNT     (16 * 1024 - 1)
#define PJMEDIA_HAS_VIDEO          0
/* The parallel conference bridge: the feature server sets its thread count at start (one per
 * core), so one process mixes on every core. */
#define PJMEDIA_CONF_BACKEND       PJMEDIA_CONF_PARALLEL_BRIDGE_BACKEND
