package broker

// ApiVersions (key 18), v0-v3.
//
// The answer is derived from the registry that every API file fills in, so
// the versions advertised are exactly the versions handled. An ApiVersions
// request of a version we do not know is answered in v0 with
// UNSUPPORTED_VERSION (KIP-511), in dispatch.

import "github.com/twmb/franz-go/pkg/kmsg"

func init() { register(kmsg.ApiVersions.Int16(), 0, 3, handleApiVersions) }

func handleApiVersions(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	return now(b.apiVersionsResponse(rc.version))
}

func (b *Broker) apiVersionsResponse(version int16) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(version)
	for _, a := range sortedAPIs() {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey = a.key
		k.MinVersion = a.min
		k.MaxVersion = a.max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	return resp
}
