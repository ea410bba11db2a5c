package main

import "testing"

func TestTheSubsetMeansWhatAirlocksLanguageMeans(t *testing.T) {
	pod := map[string]string{"app": "chat-3", "tier": "api", "canary": ""}
	cases := map[string]bool{
		"app = chat-3":                                     true,
		"app == chat-4":                                    false,
		"tier in (api, web) and app = chat-3":              true,
		"team = t3 or has(canary)":                         true,
		"team != t3":                                       true, // absent labels match !=
		"team notin (t1, t2)":                              true,
		"not has(canary) or tier = db":                     false,
		"app = x and tier = api or has(canary)":            true, // and binds tighter than or
		"!(app==chat-3) && (tier in ('api','') || has(x))": false,
	}
	for input, want := range cases {
		e, err := parse(input)
		if err != nil {
			t.Fatalf("%s: %v", input, err)
		}
		if got := e.matches(pod); got != want {
			t.Errorf("%s: got %v, want %v", input, got, want)
		}
	}
	for _, bad := range []string{"app =", "tier in (a, b", "app = x and", "(app = x"} {
		if _, err := parse(bad); err == nil {
			t.Errorf("%s: parsed", bad)
		}
	}
}
