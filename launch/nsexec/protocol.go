package nsexec

// The protocol between the privileged Go side and the C helpers, as in
// protocol.h (TestProtocolMatchesHeader keeps the two in step).
const (
	EnvMode   = "_BPFGATE_CHILD"
	EnvNFDs   = "_BPFGATE_NFDS"
	EnvUIDMap = "_BPFGATE_UIDMAP"
	EnvGIDMap = "_BPFGATE_GIDMAP"
	EnvNet    = "_BPFGATE_NET"
	EnvTarget = "_BPFGATE_TARGET"
	EnvCaps   = "_BPFGATE_CAPS"
	EnvCgName = "_BPFGATE_CGNAME"
	EnvUnix   = "_BPFGATE_UNIX"
	EnvRecord = "_BPFGATE_RECORD"
	EnvFault  = "BPFGATE_FAULT"

	ModeSandbox = "sandbox"
	ModeEnter   = "enter"
	ModeVerify  = "verify"
	RecordBPF   = "bpf" // EnvRecord's value

	MsgContext  = "context"
	MsgReady    = "ready"
	MsgMounted  = "mounted"
	MsgListener = "listener"
	MsgExec     = "exec"
	MsgError    = "error: "

	// Sandbox control fds, counted from 3 plus the preserved fds.
	SandboxSock     = 0
	SandboxLife     = 1
	SandboxCgParent = 2
	SandboxLease    = 3
	SandboxNCtl     = 4

	EnterSock  = 3
	EnterPidFD = 4
	EnterDir   = 5

	VerifyUserNS  = 3
	VerifyMount   = 4
	VerifyOwned   = 0
	VerifyForeign = 1

	ExitSetup    = 125
	ExitNoExec   = 126
	ExitNotFound = 127
)
