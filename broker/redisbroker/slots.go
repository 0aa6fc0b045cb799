package redisbroker

import "strconv"

// Redis Cluster maps a key to one of 16384 slots by the CRC16 of its hash
// tag, and masters usually own equal, contiguous slot ranges. The
// partitions' tags are chosen so that partition p's slot lies in the p-th
// of len(tags) equal slot ranges: however many masters share the slots
// evenly, they share the partitions evenly too (16 partitions over 3
// masters: 5, 5 and 6; the plain tags "0".."15" would give 6, 6 and 4), and
// so the publishes and pub/sub connections.

const clusterSlots = 16384

// crc16 is the CRC16 Redis Cluster uses (XMODEM: polynomial 0x1021, no
// reflection, initial value 0).
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slotOf is the Cluster slot of hash tag tag.
func slotOf(tag string) int { return int(crc16(tag)) % clusterSlots }

// partitionTags returns n hash tags, the p-th hashing into the p-th of n
// equal slot ranges. Each is the smallest decimal number that does, so
// every node of a deployment computes the same tags. The search takes
// about n tries per tag.
func partitionTags(n int) []string {
	tags := make([]string, n)
	for p := range tags {
		lo, hi := p*clusterSlots/n, (p+1)*clusterSlots/n
		for k := 0; ; k++ {
			tag := strconv.Itoa(k)
			if s := slotOf(tag); s >= lo && s < hi {
				tags[p] = tag
				break
			}
		}
	}
	return tags
}
