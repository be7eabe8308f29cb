package nsexec

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestProtocolMatchesHeader checks that every #define of protocol.h has the
// same value in protocol.go.
func TestProtocolMatchesHeader(t *testing.T) {
	h, err := os.ReadFile("protocol.h")
	if err != nil {
		t.Fatal(err)
	}
	goValues := map[string]string{
		"ENV_MODE": EnvMode, "ENV_NFDS": EnvNFDs, "ENV_UIDMAP": EnvUIDMap, "ENV_GIDMAP": EnvGIDMap,
		"ENV_NET": EnvNet, "ENV_TARGET": EnvTarget, "ENV_CAPS": EnvCaps, "ENV_CGNAME": EnvCgName, "ENV_UNIX": EnvUnix, "ENV_RECORD": EnvRecord, "RECORD_BPF": RecordBPF, "MSG_LISTENER": MsgListener,
		"ENV_FAULT": EnvFault, "MODE_SANDBOX": ModeSandbox, "MODE_ENTER": ModeEnter, "MODE_VERIFY": ModeVerify,
		"VERIFY_USERNS": strconv.Itoa(VerifyUserNS), "VERIFY_MOUNT": strconv.Itoa(VerifyMount),
		"VERIFY_OWNED": strconv.Itoa(VerifyOwned), "VERIFY_FOREIGN": strconv.Itoa(VerifyForeign),
		"MSG_CONTEXT": MsgContext, "MSG_READY": MsgReady, "MSG_MOUNTED": MsgMounted, "MSG_EXEC": MsgExec,
		"MSG_ERROR":    MsgError,
		"SANDBOX_SOCK": strconv.Itoa(SandboxSock), "SANDBOX_LIFE": strconv.Itoa(SandboxLife),
		"SANDBOX_CGPARENT": strconv.Itoa(SandboxCgParent),
		"SANDBOX_LEASE":    strconv.Itoa(SandboxLease), "SANDBOX_NCTL": strconv.Itoa(SandboxNCtl),
		"ENTER_SOCK": strconv.Itoa(EnterSock), "ENTER_PIDFD": strconv.Itoa(EnterPidFD), "ENTER_DIR": strconv.Itoa(EnterDir),
		"EXIT_SETUP": strconv.Itoa(ExitSetup), "EXIT_NOEXEC": strconv.Itoa(ExitNoExec), "EXIT_NOTFOUND": strconv.Itoa(ExitNotFound),
	}
	re := regexp.MustCompile(`(?m)^#define BPFGATE_([A-Z_]+) ("[^"]*"|\d+)`)
	seen := 0
	for _, m := range re.FindAllStringSubmatch(string(h), -1) {
		name, val := m[1], m[2]
		if s, err := strconv.Unquote(val); err == nil {
			val = s
		}
		want, ok := goValues[name]
		if !ok {
			t.Errorf("protocol.h defines BPFGATE_%s, protocol.go does not", name)
			continue
		}
		seen++
		if want != val {
			t.Errorf("BPFGATE_%s: protocol.h %q, protocol.go %q", name, val, want)
		}
	}
	if seen != len(goValues) {
		t.Errorf("protocol.h has %d of the %d values protocol.go defines", seen, len(goValues))
	}
}
