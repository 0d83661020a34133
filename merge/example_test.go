package merge_test

import (
	"fmt"
	"os"

	"github.com/synkfs/synkfs/merge"
)

func ExampleMerge() {
	base := []byte(`{"name":"Ada","age":36,"city":"London"}`)
	local := []byte(`{"name":"Ada L.","age":37,"city":"London"}`)
	server := []byte(`{"name":"Ada S.","age":36,"city":"Paris"}`)

	merged, conflicts, err := merge.Merge(base, local, server)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", merged)
	for _, c := range conflicts {
		fmt.Printf("conflict at %s: %s vs %s\n", merge.PathString(c.Path), c.Ours, c.Theirs)
	}

	diffs, _ := merge.Diff(base, local, server)
	merge.FormatDiff(os.Stdout, diffs)
	// Output:
	// {"age":37,"city":"Paris","name":"Ada L."}
	// conflict at name: "Ada L." vs "Ada S."
	//   age   base: 36        local: 37        server: 36        local
	//   city  base: "London"  local: "London"  server: "Paris"   server
	//   name  base: "Ada"     local: "Ada L."  server: "Ada S."  CONFLICT
}

func ExampleCanonical() {
	out, err := merge.Canonical([]byte(`{ "b": [1.0, 2.50, 1e3], "a": "\u00e9 <ok>" }`))
	fmt.Printf("%s %v\n", out, err)
	_, err = merge.Canonical([]byte(`{"a":1,"a":2}`))
	fmt.Println(err)
	// Output:
	// {"a":"é <ok>","b":[1,2.5,1000]} <nil>
	// json at offset 0: duplicate key "a" in the object starting here
}
