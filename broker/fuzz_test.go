package broker

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/acl"
)

// FuzzRequestFrame feeds arbitrary bytes to the request decoder and the
// handlers behind it, as if a client had sent them as one frame. The broker
// must answer with an error (which closes that connection) or a response
// that encodes, and never panic. The seed corpus in
// testdata/fuzz/FuzzRequestFrame holds real requests of every API.
func FuzzRequestFrame(f *testing.F) {
	for _, frame := range seedFrames() {
		f.Add(frame)
	}
	cfg := DefaultConfig()
	cfg.NodeID = 1
	cfg.DataDir = f.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.InitialRebalanceDelay = time.Millisecond
	cfg.Logger = hclog.NewNullLogger()
	// ACLs on, so that the authorization of every request is fuzzed too
	// (and the ACL requests change what later ones may do).
	cfg.ACLs, cfg.AllowEveryoneIfNoACL = true, true
	b, err := Open(cfg)
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	f.Fuzz(func(t *testing.T, frame []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		in, err := b.dispatch(ctx, frame, "127.0.0.1", &connAuth{principal: acl.Anonymous})
		if err != nil || in.respond == nil {
			return
		}
		if resp := in.respond(); resp != nil {
			resp.SetVersion(in.version)
			resp.AppendTo(nil)
		}
	})
}

// seedFrames returns one well-formed frame (without the size prefix) per
// supported API, at its highest version.
func seedFrames() [][]byte {
	var out [][]byte
	add := func(r kmsg.Request) {
		a := apis[r.Key()]
		r.SetVersion(a.max)
		out = append(out, kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz")).AppendRequest(nil, r, 1)[4:])
	}
	topic := "fuzz"
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = &topic
	md.Topics = append(md.Topics, mt)
	md.AllowAutoTopicCreation = true
	add(md)
	add(kmsg.NewPtrApiVersionsRequest())
	pr := kmsg.NewPtrProduceRequest()
	pr.Acks = 1
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = topic
	pp := kmsg.NewProduceRequestTopicPartition()
	rb := kmsg.RecordBatch{Magic: 2, NumRecords: 1, ProducerID: -1, FirstSequence: -1, Records: []byte{0x10, 0, 0, 0, 0, 2, 'h', 'i', 0}}
	raw := rb.AppendTo(nil)
	rb.Length = int32(len(raw) - 12)
	raw = rb.AppendTo(nil)
	rb.CRC = int32(crc32c(raw[21:]))
	pp.Records = rb.AppendTo(nil)
	pt.Partitions = append(pt.Partitions, pp)
	pr.Topics = append(pr.Topics, pt)
	add(pr)
	fr := kmsg.NewPtrFetchRequest()
	fr.MaxBytes = 1 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fr.Topics = append(fr.Topics, ft)
	add(fr)
	lo := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp = -2
	lt.Partitions = append(lt.Partitions, lp)
	lo.Topics = append(lo.Topics, lt)
	add(lo)
	ct := kmsg.NewPtrCreateTopicsRequest()
	ctt := kmsg.NewCreateTopicsRequestTopic()
	ctt.Topic, ctt.NumPartitions, ctt.ReplicationFactor = "fuzz2", 2, -1
	ct.Topics = append(ct.Topics, ctt)
	add(ct)
	dc := kmsg.NewPtrDescribeConfigsRequest()
	dr := kmsg.NewDescribeConfigsRequestResource()
	dr.ResourceType, dr.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	dc.Resources = append(dc.Resources, dr)
	add(dc)
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "g"
	fc.CoordinatorKeys = []string{"g"}
	add(fc)
	add(kmsg.NewPtrInitProducerIDRequest())
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Group = "g"
	add(of)
	add(kmsg.NewPtrListGroupsRequest())
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group = "g"
	add(hb)
	ca := kmsg.NewPtrCreateACLsRequest()
	cc := kmsg.NewCreateACLsRequestCreation()
	cc.ResourceType, cc.ResourceName, cc.ResourcePatternType = kmsg.ACLResourceTypeTopic, topic, kmsg.ACLResourcePatternTypePrefixed
	cc.Principal, cc.Host, cc.Operation, cc.PermissionType = "User:ANONYMOUS", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeDeny
	ca.Creations = append(ca.Creations, cc)
	add(ca)
	da := kmsg.NewPtrDescribeACLsRequest()
	da.ResourceType, da.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeMatch
	da.ResourceName = &topic
	da.Operation, da.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	add(da)
	xa := kmsg.NewPtrDeleteACLsRequest()
	xf := kmsg.NewDeleteACLsRequestFilter()
	xf.ResourceType, xf.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	xf.Operation, xf.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	xa.Filters = append(xa.Filters, xf)
	add(xa)
	aq := kmsg.NewPtrAlterClientQuotasRequest()
	aqe := kmsg.NewAlterClientQuotasRequestEntry()
	aqn := kmsg.NewAlterClientQuotasRequestEntryEntity()
	aqn.Type = "client-id" // the default client id: Name nil
	aqo := kmsg.NewAlterClientQuotasRequestEntryOp()
	aqo.Key, aqo.Value = "producer_byte_rate", 1e9
	aqe.Entity, aqe.Ops = append(aqe.Entity, aqn), append(aqe.Ops, aqo)
	aq.Entries = append(aq.Entries, aqe)
	add(aq)
	dq := kmsg.NewPtrDescribeClientQuotasRequest()
	dqc := kmsg.NewDescribeClientQuotasRequestComponent()
	dqc.EntityType, dqc.MatchType = "client-id", 2
	dq.Components = append(dq.Components, dqc)
	add(dq)
	as := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	asu := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
	asu.Name, asu.Mechanism, asu.Iterations = "fuzz", 1, 4096
	asu.Salt, asu.SaltedPassword = []byte("salt"), bytes.Repeat([]byte{1}, 32)
	as.Upsertions = append(as.Upsertions, asu)
	add(as)
	add(kmsg.NewPtrDescribeUserSCRAMCredentialsRequest())
	// Transactions (txn.go): a producer of transactional id "fuzz-tx"
	// (producer id 0 in a fresh broker) through every step.
	tid := "fuzz-tx"
	ip := kmsg.NewPtrInitProducerIDRequest()
	ip.TransactionalID, ip.TransactionTimeoutMillis = &tid, 60000
	add(ip)
	ftc := kmsg.NewPtrFindCoordinatorRequest()
	ftc.CoordinatorType, ftc.CoordinatorKey, ftc.CoordinatorKeys = 1, tid, []string{tid}
	add(ftc)
	ap := kmsg.NewPtrAddPartitionsToTxnRequest()
	ap.TransactionalID = tid
	apt := kmsg.NewAddPartitionsToTxnRequestTopic()
	apt.Topic, apt.Partitions = topic, []int32{0}
	ap.Topics = append(ap.Topics, apt)
	add(ap)
	tpr := kmsg.NewPtrProduceRequest()
	tpr.Acks, tpr.TransactionID = -1, &tid
	tpt := kmsg.NewProduceRequestTopic()
	tpt.Topic = topic
	tpp := kmsg.NewProduceRequestTopicPartition()
	trb := kmsg.RecordBatch{Magic: 2, Attributes: 0x10, NumRecords: 1, Records: []byte{0x10, 0, 0, 0, 0, 2, 'h', 'i', 0}}
	traw := trb.AppendTo(nil)
	trb.Length = int32(len(traw) - 12)
	traw = trb.AppendTo(nil)
	trb.CRC = int32(crc32c(traw[21:]))
	tpp.Records = trb.AppendTo(nil)
	tpt.Partitions = append(tpt.Partitions, tpp)
	tpr.Topics = append(tpr.Topics, tpt)
	add(tpr)
	ao := kmsg.NewPtrAddOffsetsToTxnRequest()
	ao.TransactionalID, ao.Group = tid, "g"
	add(ao)
	to := kmsg.NewPtrTxnOffsetCommitRequest()
	to.TransactionalID, to.Group, to.Generation = tid, "g", -1
	tot := kmsg.NewTxnOffsetCommitRequestTopic()
	tot.Topic = topic
	tot.Partitions = append(tot.Partitions, kmsg.NewTxnOffsetCommitRequestTopicPartition())
	to.Topics = append(to.Topics, tot)
	add(to)
	rcf := kmsg.NewPtrFetchRequest()
	rcf.MaxBytes, rcf.IsolationLevel = 1<<20, 1
	rcf.Topics = append(rcf.Topics, ft)
	add(rcf)
	et := kmsg.NewPtrEndTxnRequest()
	et.TransactionalID, et.Commit = tid, true
	add(et)
	wm := kmsg.NewPtrWriteTxnMarkersRequest()
	wmm := kmsg.NewWriteTxnMarkersRequestMarker()
	wmt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
	wmt.Topic, wmt.Partitions = topic, []int32{0}
	wmm.Topics = append(wmm.Topics, wmt)
	wm.Markers = append(wm.Markers, wmm)
	add(wm)
	dpr := kmsg.NewPtrDescribeProducersRequest()
	dpt := kmsg.NewDescribeProducersRequestTopic()
	dpt.Topic, dpt.Partitions = topic, []int32{0}
	dpr.Topics = append(dpr.Topics, dpt)
	add(dpr)
	add(kmsg.NewPtrListTransactionsRequest())
	dt := kmsg.NewPtrDescribeTransactionsRequest()
	dt.TransactionalIDs = []string{tid}
	add(dt)
	return out
}

// FuzzCheckRecords feeds arbitrary records sections, with any codec and
// record count, to the check every produced batch goes through. It must
// return an error or nil, never panic, and never let more than the cap
// out of a decompressor. The seed corpus in testdata/fuzz/FuzzCheckRecords
// holds valid records of every codec and small bombs (fuzzSeedRecords).
func FuzzCheckRecords(f *testing.F) {
	for _, s := range fuzzSeedRecords(f) {
		f.Add(s.codec, s.data, s.records)
	}
	f.Fuzz(func(t *testing.T, codec uint8, data []byte, records int32) {
		err := checkRecordsData(int16(codec&0x07), data, records, fuzzRecordsLimit)
		if err == nil && codec&0x07 > 4 {
			t.Fatalf("codec %d accepted", codec&0x07)
		}
	})
}

const fuzzRecordsLimit = 64 << 10

type recordsSeed struct {
	codec   uint8
	data    []byte
	records int32
}

// fuzzSeedRecords returns, for every codec, a valid records section and a
// bomb that decompresses past fuzzRecordsLimit.
func fuzzSeedRecords(t testing.TB) []recordsSeed {
	var out []recordsSeed
	valid := testRecords(5, 20)
	bombRecord := testRecords(1, 1000)
	bomb := bytes.Repeat(bombRecord, 4*fuzzRecordsLimit/len(bombRecord))
	out = append(out, recordsSeed{0, valid, 5})
	for _, c := range compressors {
		out = append(out, recordsSeed{uint8(c.codec), c.enc(t, valid), 5})
		out = append(out, recordsSeed{uint8(c.codec), c.enc(t, bomb), int32(len(bomb) / len(bombRecord))})
	}
	return out
}
