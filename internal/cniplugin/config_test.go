package cniplugin

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovsnet/ovsnet/internal/cniapi"
)

func TestParseConfigDefaultsAndFields(t *testing.T) {
	conf, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"pods","type":"ovsnet","unknownField":{"x":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.AgentSocket != cniapi.DefaultSocket || conf.Timeout != 0 || conf.PrevResult != nil || conf.RuntimeConfig != nil {
		t.Fatalf("defaults: %+v", conf)
	}
	if conf.TimeoutFor(cniapi.VerbAdd) != 2*time.Minute || conf.TimeoutFor(cniapi.VerbStatus) != 10*time.Second {
		t.Fatalf("default timeouts %v %v", conf.TimeoutFor(cniapi.VerbAdd), conf.TimeoutFor(cniapi.VerbStatus))
	}
	if conf.ValidAttachments == nil || len(conf.ValidAttachments) != 0 {
		t.Fatalf("absent valid attachments should be an empty list, got %#v", conf.ValidAttachments)
	}

	conf, err = ParseConfig([]byte(`{
		"cniVersion":"0.4.0","name":"pods","type":"ovsnet",
		"agentSocket":"/run/ovsnet/../ovsnet/x.sock","timeoutSeconds":30,
		"runtimeConfig":{"portMappings":[]},"args":{"cni":{}},
		"prevResult":{"cniVersion":"0.4.0","interfaces":[{"name":"eth0"}],"ips":[{"version":"4","interface":0,"address":"10.244.0.5/24","gateway":"10.244.0.1"}]},
		"cni.dev/attachments":[{"containerID":"c","ifname":"eth0"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.AgentSocket != "/run/ovsnet/x.sock" || conf.TimeoutFor(cniapi.VerbDel) != 30*time.Second {
		t.Fatalf("socket %q timeout %v", conf.AgentSocket, conf.TimeoutFor(cniapi.VerbDel))
	}
	if string(conf.RuntimeConfig) != `{"portMappings":[]}` {
		t.Fatalf("runtimeConfig %s", conf.RuntimeConfig)
	}
	if p := conf.PrevResult; p == nil || p.CNIVersion != cniapi.CurrentCNIVersion || p.IPs[0].Address.String() != "10.244.0.5/24" || *p.IPs[0].Interface != 0 {
		t.Fatalf("prevResult %+v", conf.PrevResult)
	}
	if len(conf.ValidAttachments) != 1 || conf.ValidAttachments[0].ContainerID != "c" {
		t.Fatalf("legacy cni.dev/attachments not read: %+v", conf.ValidAttachments)
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := map[string]struct {
		in   string
		code uint
		msg  string
	}{
		"syntax":             {`{"cniVersion":`, types.ErrDecodingFailure, ""},
		"null":               {`null`, types.ErrDecodingFailure, ""},
		"array":              {`[]`, types.ErrDecodingFailure, ""},
		"version not string": {`{"cniVersion":1,"name":"n","type":"ovsnet"}`, types.ErrDecodingFailure, "cniVersion"},
		"unsupported":        {`{"cniVersion":"0.2.0","name":"n","type":"ovsnet"}`, types.ErrIncompatibleCNIVersion, "0.2.0"},
		"type":               {`{"cniVersion":"1.1.0","name":"n","type":"bridge"}`, types.ErrInvalidNetworkConfig, "bridge"},
		"no type":            {`{"cniVersion":"1.1.0","name":"n"}`, types.ErrInvalidNetworkConfig, "type"},
		"socket type":        {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","agentSocket":true}`, types.ErrInvalidNetworkConfig, "agentSocket"},
		"socket empty":       {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","agentSocket":""}`, types.ErrInvalidNetworkConfig, "empty"},
		"socket nul":         {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","agentSocket":"/a\u0000b"}`, types.ErrInvalidNetworkConfig, "NUL"},
		"timeout zero":       {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","timeoutSeconds":0}`, types.ErrInvalidNetworkConfig, "timeoutSeconds"},
		"timeout huge":       {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","timeoutSeconds":99999999999999999999}`, types.ErrInvalidNetworkConfig, "timeoutSeconds"},
		"timeout string":     {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","timeoutSeconds":"5"}`, types.ErrInvalidNetworkConfig, "timeoutSeconds"},
		"args not object":    {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","args":"x"}`, types.ErrInvalidNetworkConfig, "args"},
		"prev not object":    {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","prevResult":[1]}`, types.ErrInvalidNetworkConfig, "prevResult"},
		"prev bad address":   {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","prevResult":{"ips":[{"address":"x"}]}}`, types.ErrInvalidNetworkConfig, "prevResult"},
		"prev bad version":   {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","prevResult":{"cniVersion":"9"}}`, types.ErrInvalidNetworkConfig, "prevResult"},
		"attachment empty":   {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","cni.dev/valid-attachments":[{}]}`, types.ErrInvalidNetworkConfig, "valid-attachments"},
		"attachments type":   {`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","cni.dev/valid-attachments":{}}`, types.ErrInvalidNetworkConfig, "valid-attachments"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.in))
			var e *types.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want a CNI error", err)
			}
			if e.Code != tc.code || !strings.Contains(e.Error(), tc.msg) {
				t.Fatalf("got code %d %q, want code %d mentioning %q", e.Code, e.Error(), tc.code, tc.msg)
			}
		})
	}
}

func TestParseCNIArgs(t *testing.T) {
	pod, other, err := ParseCNIArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;;X=a=b")
	if err != nil {
		t.Fatal(err)
	}
	if pod != (cniapi.PodRef{Namespace: "ns", Name: "web-0", InfraContainerID: "abc", UID: "u-1"}) {
		t.Fatalf("pod %+v", pod)
	}
	if len(other) != 2 || other["IgnoreUnknown"] != "1" || other["X"] != "a=b" {
		t.Fatalf("other %v", other)
	}
	if _, o, err := ParseCNIArgs(""); err != nil || o != nil {
		t.Fatalf("empty: %v %v", o, err)
	}
	for _, bad := range []string{"novalue", "=v", "A=1;junk"} {
		_, _, err := ParseCNIArgs(bad)
		var e *types.Error
		if !errors.As(err, &e) || e.Code != types.ErrInvalidEnvironmentVariables {
			t.Errorf("ParseCNIArgs(%q) = %v, want code 4", bad, err)
		}
	}
}

// FuzzParseConfig: any stdin either parses into a usable configuration or
// fails with a CNI error of code 1, 6 or 7; it never panics.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		`{"cniVersion":"1.1.0","name":"n","type":"ovsnet"}`,
		`{"cniVersion":"0.3.1","name":"n","type":"ovsnet","agentSocket":"/run/x.sock","timeoutSeconds":5}`,
		`{"cniVersion":"0.4.0","name":"n","type":"ovsnet","prevResult":{"cniVersion":"0.4.0","interfaces":[{"name":"eth0"}],"ips":[{"version":"4","interface":0,"address":"10.0.0.2/24"}]}}`,
		`{"cniVersion":"0.3.0","name":"n","type":"ovsnet","prevResult":{"ips":[{"version":"6","interface":5,"address":"fd00::2/64"}],"routes":[{"dst":"0.0.0.0/0"}]}}`,
		`{"cniVersion":"1.0.0","name":"n","type":"ovsnet","prevResult":{"cniVersion":"1.0.0","interfaces":[],"ips":[{"interface":-1,"address":"10.0.0.2/24"}],"dns":{"nameservers":["1.1.1.1"]}}}`,
		`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}],"runtimeConfig":{}}`,
		`{"cniVersion":"1.1.0","name":"n","type":"ovsnet","args":{"cni":{"ips":["10.0.0.5"]}}}`,
		`[]`, `null`, `"x"`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		conf, err := ParseConfig(data)
		if err != nil {
			var e *types.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a CNI error", err)
			}
			switch e.Code {
			case types.ErrIncompatibleCNIVersion, types.ErrDecodingFailure, types.ErrInvalidNetworkConfig:
			default:
				t.Fatalf("code %d for %q", e.Code, data)
			}
			if e.Msg == "" {
				t.Fatal("error without a message")
			}
			return
		}
		if conf.AgentSocket == "" || conf.AgentSocket[0] != '/' || len(conf.AgentSocket) > maxSocketPath {
			t.Fatalf("accepted socket %q", conf.AgentSocket)
		}
		if conf.ValidAttachments == nil {
			t.Fatal("nil valid attachments")
		}
		// What the plugin sends must encode.
		req := cniapi.Request{NetConf: conf.Raw, PrevResult: conf.PrevResult, RuntimeConfig: conf.RuntimeConfig}
		if _, err := json.Marshal(req); err != nil {
			t.Fatalf("request for accepted config does not encode: %v", err)
		}
	})
}

// FuzzParseCNIArgs: never panics; errors are code 4.
func FuzzParseCNIArgs(f *testing.F) {
	for _, s := range []string{"", "A=1", "K8S_POD_NAME=x;K8S_POD_NAMESPACE=y", ";;", "=", "a=b=c;d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _, err := ParseCNIArgs(s)
		var e *types.Error
		if err != nil && (!errors.As(err, &e) || e.Code != types.ErrInvalidEnvironmentVariables) {
			t.Fatalf("ParseCNIArgs(%q): %v", s, err)
		}
	})
}
