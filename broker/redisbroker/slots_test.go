package redisbroker

import (
	"context"
	"strings"
	"testing"

	"github.com/heraldpush/herald/broker/brokertest"
)

func TestCRC16(t *testing.T) {
	// The check value of CRC16/XMODEM, and slots Redis documents.
	if got := crc16("123456789"); got != 0x31c3 {
		t.Fatalf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	if got := slotOf("foo"); got != 12182 {
		t.Fatalf("slot of foo = %d, want 12182 (CLUSTER KEYSLOT foo)", got)
	}
}

func TestPartitionTagsBalanced(t *testing.T) {
	for _, n := range []int{1, 3, 8, 16, 64} {
		tags := partitionTags(n)
		seen := map[string]bool{}
		for p, tag := range tags {
			s := slotOf(tag)
			if lo, hi := p*clusterSlots/n, (p+1)*clusterSlots/n; s < lo || s >= hi || seen[tag] {
				t.Fatalf("n=%d: partition %d has tag %q in slot %d, want a new tag in [%d, %d)", n, p, tag, s, lo, hi)
			}
			seen[tag] = true
		}
	}
}

// More partitions than Cluster slots are refused by New, before it dials:
// partitionTags could not find a slot range for each.
func TestNewRefusesTooManyPartitions(t *testing.T) {
	_, err := New(context.Background(), Options{URL: "redis://127.0.0.1:1", Partitions: MaxPartitions + 1}, brokertest.NewRecorder())
	if err == nil || !strings.Contains(err.Error(), "at most 16384") {
		t.Fatalf("New with %d partitions = %v, want an error naming the bound", MaxPartitions+1, err)
	}
}
