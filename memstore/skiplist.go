package memstore

import "math/rand/v2"

const maxLevel = 24 // enough for 2^24 * 4 entries at p = 1/4

// skiplist is an ordered set with O(log n) expected insert, delete and
// seek. It is not safe for concurrent use; Store guards it.
type skiplist[K any] struct {
	cmp   func(a, b K) int
	head  node[K]
	level int
	len   int
	rng   *rand.Rand
}

type node[K any] struct {
	key  K
	next []*node[K]
}

func newSkiplist[K any](cmp func(a, b K) int) *skiplist[K] {
	return &skiplist[K]{
		cmp:   cmp,
		head:  node[K]{next: make([]*node[K], maxLevel)},
		level: 1,
		rng:   rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

func (l *skiplist[K]) randomLevel() int {
	lvl := 1
	for lvl < maxLevel && l.rng.Uint32()&3 == 0 {
		lvl++
	}
	return lvl
}

// path fills prev with, per level, the last node whose key is below k.
func (l *skiplist[K]) path(k K, prev *[maxLevel]*node[K]) {
	x := &l.head
	for i := l.level - 1; i >= 0; i-- {
		for x.next[i] != nil && l.cmp(x.next[i].key, k) < 0 {
			x = x.next[i]
		}
		prev[i] = x
	}
}

// insert adds k; it reports false (and changes nothing) if k is present.
func (l *skiplist[K]) insert(k K) bool {
	var prev [maxLevel]*node[K]
	l.path(k, &prev)
	if n := prev[0].next[0]; n != nil && l.cmp(n.key, k) == 0 {
		return false
	}
	lvl := l.randomLevel()
	for i := l.level; i < lvl; i++ {
		prev[i] = &l.head
	}
	if lvl > l.level {
		l.level = lvl
	}
	n := &node[K]{key: k, next: make([]*node[K], lvl)}
	for i := range lvl {
		n.next[i] = prev[i].next[i]
		prev[i].next[i] = n
	}
	l.len++
	return true
}

// delete removes k; it reports whether k was present.
func (l *skiplist[K]) delete(k K) bool {
	var prev [maxLevel]*node[K]
	l.path(k, &prev)
	n := prev[0].next[0]
	if n == nil || l.cmp(n.key, k) != 0 {
		return false
	}
	for i := range n.next {
		prev[i].next[i] = n.next[i]
	}
	for l.level > 1 && l.head.next[l.level-1] == nil {
		l.level--
	}
	l.len--
	return true
}

// seek returns the first node whose key is not below k, or nil.
func (l *skiplist[K]) seek(k K) *node[K] {
	x := &l.head
	for i := l.level - 1; i >= 0; i-- {
		for x.next[i] != nil && l.cmp(x.next[i].key, k) < 0 {
			x = x.next[i]
		}
	}
	return x.next[0]
}

// first returns the smallest node, or nil.
func (l *skiplist[K]) first() *node[K] { return l.head.next[0] }
