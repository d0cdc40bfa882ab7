// Command wire-producer writes raw Kafka records as an outside producer does
// (franz-go, the client a Go service would use): any bytes in keys, values,
// header names and header values, real nulls, and any of Kafka's codecs.
// The integration tests use it to put on the wire what no Python client can.
//
// Input, on stdin, one JSON object per record:
//
//	{"topic": "t", "partition": 0 | null, "key": "<base64>" | null,
//	 "value": "<base64>" | null, "headers": [["<base64 name>", "<base64>" | null], ...],
//	 "timestamp_ms": 1700000000000 | null}
//
// A null key or value is sent as a null (length -1), an empty string as an
// empty one; a null partition lets Kafka's default partitioner choose
// (murmur2 of the key, sticky for keyless records); a null timestamp is the
// time of producing.
//
// All records are buffered first and sent by one flush (or one flush per
// --batch records), so records bound for one partition share a record batch
// and, with a codec, one compressed payload. franz-go sends a batch
// uncompressed when compressing would not make it smaller; --require-codec
// makes that an error, so a test knows the codec was on the wire.
//
// Output, on stdout, one line per input record, in input order:
//
//	{"partition": 0, "offset": 42}
//
// Exit status: 0 when every record was acknowledged (acks=all, idempotent);
// 1 with one line on stderr when any record failed; 2 for bad input or flags.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type input struct {
	Topic       string      `json:"topic"`
	Partition   *int32      `json:"partition"`
	Key         *string     `json:"key"`
	Value       *string     `json:"value"`
	Headers     [][]*string `json:"headers"`
	TimestampMs *int64      `json:"timestamp_ms"`
}

type output struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

var codecs = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

// Kafka's attribute bits for each codec, as ProduceBatchMetrics reports them.
var codecIDs = map[string]uint8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

func main() {
	brokers := flag.String("brokers", "localhost:9092", "comma-separated bootstrap servers")
	codec := flag.String("codec", "none", "none|gzip|snappy|lz4|zstd")
	batch := flag.Int("batch", 0, "flush after every N records (0: one flush after all)")
	timeout := flag.Duration("timeout", 30*time.Second, "delivery timeout per record")
	requireCodec := flag.Bool("require-codec", false,
		"fail when any batch went out without the codec (too small to compress)")
	flag.Parse()

	compression, ok := codecs[*codec]
	if !ok {
		fail(2, "unknown codec %q (none|gzip|snappy|lz4|zstd)", *codec)
	}
	records, err := read(os.Stdin)
	if err != nil {
		fail(2, "%v", err)
	}
	written := &batchCodecs{}
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.ProducerBatchCompression(compression),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ManualFlushing(),
		kgo.MaxBufferedRecords(len(records)+1),
		kgo.RecordDeliveryTimeout(*timeout),
		kgo.RecordPartitioner(manualOrDefault{}),
		kgo.WithHooks(written),
	)
	if err != nil {
		fail(2, "%v", err)
	}
	defer client.Close()

	results := make([]output, len(records))
	errs := make([]error, len(records))
	var wg sync.WaitGroup
	ctx := context.Background()
	for i, r := range records {
		wg.Add(1)
		client.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			results[i] = output{r.Partition, r.Offset}
			errs[i] = err
		})
		if *batch > 0 && (i+1)%*batch == 0 {
			if err := client.Flush(ctx); err != nil {
				fail(1, "flush: %v", err)
			}
		}
	}
	if err := client.Flush(ctx); err != nil {
		fail(1, "flush: %v", err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			fail(1, "record %d: %v", i, err)
		}
	}
	if want := codecIDs[*codec]; *requireCodec && written.other(want) {
		fail(1, "a batch went out without codec %s (too small or incompressible to gain)", *codec)
	}
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			fail(1, "stdout: %v", err)
		}
	}
	if err := out.Flush(); err != nil {
		fail(1, "stdout: %v", err)
	}
}

// read decodes every input line into a record; Partition -1 means "let the
// default partitioner choose".
func read(r io.Reader) ([]*kgo.Record, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<20))
	dec.DisallowUnknownFields()
	var records []*kgo.Record
	for n := 0; ; n++ {
		var in input
		if err := dec.Decode(&in); errors.Is(err, io.EOF) {
			return records, nil
		} else if err != nil {
			return nil, fmt.Errorf("input record %d: %w", n, err)
		}
		rec, err := record(in)
		if err != nil {
			return nil, fmt.Errorf("input record %d: %w", n, err)
		}
		records = append(records, rec)
	}
}

func record(in input) (*kgo.Record, error) {
	if in.Topic == "" {
		return nil, errors.New("topic is required")
	}
	rec := &kgo.Record{Topic: in.Topic, Partition: -1}
	if in.Partition != nil {
		if *in.Partition < 0 {
			return nil, fmt.Errorf("partition %d is negative", *in.Partition)
		}
		rec.Partition = *in.Partition
	}
	var err error
	if rec.Key, err = decode(in.Key); err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if rec.Value, err = decode(in.Value); err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	for i, h := range in.Headers {
		if len(h) != 2 || h[0] == nil {
			return nil, fmt.Errorf("header %d: want [name, value|null] with a name", i)
		}
		name, err := decode(h[0])
		if err != nil {
			return nil, fmt.Errorf("header %d name: %w", i, err)
		}
		value, err := decode(h[1])
		if err != nil {
			return nil, fmt.Errorf("header %d value: %w", i, err)
		}
		// A Go string holds any bytes; franz-go writes them as they are.
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: string(name), Value: value})
	}
	if in.TimestampMs != nil {
		rec.Timestamp = time.UnixMilli(*in.TimestampMs)
	}
	return rec, nil
}

// decode maps JSON null to a nil slice (franz-go writes length -1, Kafka's
// null) and "" to an empty, non-nil slice (length 0).
func decode(s *string) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(*s)
	if err != nil {
		return nil, err
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// manualOrDefault sends a record with a partition there, and hands the others
// to franz-go's default (Kafka's murmur2 for keys, sticky for keyless).
type manualOrDefault struct{}

func (manualOrDefault) ForTopic(topic string) kgo.TopicPartitioner {
	return &topicPartitioner{kgo.StickyKeyPartitioner(nil).ForTopic(topic)}
}

type topicPartitioner struct{ inner kgo.TopicPartitioner }

func (p *topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return r.Partition >= 0 || p.inner.RequiresConsistency(r)
}

func (p *topicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Partition >= 0 {
		return int(r.Partition)
	}
	return p.inner.Partition(r, n)
}

func (p *topicPartitioner) OnNewBatch() {
	if on, ok := p.inner.(kgo.TopicPartitionerOnNewBatch); ok {
		on.OnNewBatch()
	}
}

// batchCodecs records the codec each written batch actually carried.
type batchCodecs struct {
	mu   sync.Mutex
	seen []uint8
}

func (b *batchCodecs) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32,
	m kgo.ProduceBatchMetrics) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = append(b.seen, m.CompressionType)
}

func (b *batchCodecs) other(want uint8) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.seen {
		if c != want {
			return true
		}
	}
	return false
}

func fail(code int, format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	fmt.Fprintln(os.Stderr, "wire-producer: "+msg)
	os.Exit(code)
}
