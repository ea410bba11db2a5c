// Command peer is the client-go baseline of the operator benchmark (bench/operator.sh): a minimal,
// typical informer-based controller doing the Airlock operator's DynamicAddressGroup job.
//
// It watches pods and namespaces with a SharedInformerFactory (full objects in the informer cache, as
// client-go keeps them by default — no transform strips managedFields) and DynamicAddressGroups with a
// dynamic informer. A pod event enqueues the groups whose membership of that pod changed; a namespace
// event enqueues every group; a group event enqueues that group. Workers take group names off a
// rate-limited workqueue, list pods from the cache, evaluate spec.match (the subset in expr.go) and
// spec.namespaceSelector, and write status.memberCount and status.members with a JSON merge patch on
// the status subresource when they differ from the cached status. Unlike Airlock it does not shard
// groups above 1000 members or write conditions; the benchmark's groups stay below that.
//
// Fairness: client-side rate limiting is off (client-go's default 5 QPS would throttle the writes,
// kube-rs has none) and the typed clients speak protobuf, as kube-controller-manager does.
//
//	peer --kubeconfig FILE --addr 127.0.0.1:PORT [--workers 4]
//
// GET /ready answers 200 once the caches have synced. SIGUSR1 forces a garbage collection and returns
// free memory to the OS (debug.FreeOSMemory), then prints VmRSS, so the benchmark can read the peer's
// smallest resident set too.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

var groupsResource = schema.GroupVersionResource{Group: "airlock.dev", Version: "v1alpha1", Resource: "dynamicaddressgroups"}

// Groups without a namespace selector never include this namespace's pods (as in Airlock).
const systemNamespace = "kube-system"

// member is one entry of status.members, serialized like Airlock's.
type member struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	IPs       []string `json:"ips,omitempty"`
	Ready     bool     `json:"ready"`
}

type groupStatus struct {
	MemberCount int      `json:"memberCount"`
	Members     []member `json:"members"`
}

// compiled is a group's spec in the form the handlers evaluate.
type compiled struct {
	match     string
	selector  string // the namespace selector as JSON, to notice a change
	expr      expr
	err       error
	nsMatcher labels.Selector // nil: every namespace but kube-system
}

type controller struct {
	dynamic    dynamic.Interface
	pods       corelisters.PodLister
	namespaces corelisters.NamespaceLister
	groups     cache.GenericLister
	queue      workqueue.TypedRateLimitingInterface[string]

	mu       sync.Mutex
	compiled map[string]*compiled
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file")
	addr := flag.String("addr", "127.0.0.1:0", "address of the /ready endpoint")
	workers := flag.Int("workers", 4, "concurrent group reconciles")
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	cfg.QPS = -1 // no client-side rate limiting (see the package comment)
	cfg.UserAgent = "airlock-bench-peer"
	typed := *cfg
	typed.ContentType = "application/vnd.kubernetes.protobuf"
	typed.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	clientset, err := kubernetes.NewForConfig(&typed)
	if err != nil {
		log.Fatalf("client: %v", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		log.Fatalf("dynamic client: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go reportMemory()

	factory := informers.NewSharedInformerFactory(clientset, 0)
	podInformer := factory.Core().V1().Pods()
	nsInformer := factory.Core().V1().Namespaces()
	dynFactory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	groupInformer := dynFactory.ForResource(groupsResource)

	c := &controller{
		dynamic:    dyn,
		pods:       podInformer.Lister(),
		namespaces: nsInformer.Lister(),
		groups:     groupInformer.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "dynamicaddressgroups"}),
		compiled: map[string]*compiled{},
	}
	must := func(_ cache.ResourceEventHandlerRegistration, err error) {
		if err != nil {
			log.Fatalf("event handler: %v", err)
		}
	}
	must(podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.podChanged(nil, asPod(obj)) },
		UpdateFunc: func(old, obj any) { c.podChanged(asPod(old), asPod(obj)) },
		DeleteFunc: func(obj any) { c.podChanged(asPod(obj), nil) },
	}))
	must(nsInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueueAll() },
		UpdateFunc: func(old, obj any) {
			if !reflect.DeepEqual(old.(*corev1.Namespace).Labels, obj.(*corev1.Namespace).Labels) {
				c.enqueueAll()
			}
		},
		DeleteFunc: func(any) { c.enqueueAll() },
	}))
	must(groupInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueObject,
		UpdateFunc: func(_, obj any) { c.enqueueObject(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.mu.Lock()
				delete(c.compiled, key)
				c.mu.Unlock()
			}
		},
	}))

	factory.Start(ctx.Done())
	dynFactory.Start(ctx.Done())
	var ready atomic.Bool
	go serveReady(*addr, &ready)
	started := time.Now()
	for informer, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			log.Fatalf("cache of %v did not sync", informer)
		}
	}
	for gvr, ok := range dynFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			log.Fatalf("cache of %v did not sync", gvr)
		}
	}
	pods, _ := c.pods.List(labels.Everything())
	log.Printf("caches synced in %v: %d pods", time.Since(started).Round(time.Millisecond), len(pods))
	ready.Store(true)

	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

func asPod(obj any) *corev1.Pod {
	switch o := obj.(type) {
	case *corev1.Pod:
		return o
	case cache.DeletedFinalStateUnknown:
		pod, _ := o.Obj.(*corev1.Pod)
		return pod
	}
	return nil
}

// podChanged enqueues the groups whose view of this pod (member or not, IPs, readiness) changed.
func (c *controller) podChanged(old, pod *corev1.Pod) {
	groups, err := c.groups.List(labels.Everything())
	if err != nil {
		return
	}
	for _, obj := range groups {
		g, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		spec := c.compile(g)
		if !reflect.DeepEqual(c.memberOf(spec, old), c.memberOf(spec, pod)) {
			c.queue.Add(g.GetName())
		}
	}
}

func (c *controller) enqueueObject(obj any) {
	if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *controller) enqueueAll() {
	groups, _ := c.groups.List(labels.Everything())
	for _, obj := range groups {
		c.enqueueObject(obj)
	}
}

// compile parses a group's spec once per change of spec.match or spec.namespaceSelector.
func (c *controller) compile(g *unstructured.Unstructured) *compiled {
	match, _, _ := unstructured.NestedString(g.Object, "spec", "match")
	rawSelector, hasSelector, _ := unstructured.NestedMap(g.Object, "spec", "namespaceSelector")
	selectorJSON, _ := json.Marshal(rawSelector)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cached, ok := c.compiled[g.GetName()]; ok && cached.match == match && cached.selector == string(selectorJSON) {
		return cached
	}
	out := &compiled{match: match, selector: string(selectorJSON)}
	out.expr, out.err = parse(match)
	if hasSelector {
		var ls metav1.LabelSelector
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(rawSelector, &ls); err != nil {
			out.err = err
		} else if out.nsMatcher, err = metav1.LabelSelectorAsSelector(&ls); err != nil {
			out.err = err
		}
	}
	c.compiled[g.GetName()] = out
	return out
}

// memberOf is what the group records about pod, or nil when the pod is not a member.
func (c *controller) memberOf(spec *compiled, pod *corev1.Pod) *member {
	if pod == nil || spec.err != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	if spec.nsMatcher == nil {
		if pod.Namespace == systemNamespace {
			return nil
		}
	} else {
		ns, err := c.namespaces.Get(pod.Namespace)
		if err != nil || !spec.nsMatcher.Matches(labels.Set(ns.Labels)) {
			return nil
		}
	}
	if !spec.expr.matches(pod.Labels) {
		return nil
	}
	m := &member{Namespace: pod.Namespace, Name: pod.Name}
	for _, ip := range pod.Status.PodIPs {
		m.IPs = append(m.IPs, ip.IP)
	}
	if len(m.IPs) == 0 && pod.Status.PodIP != "" {
		m.IPs = []string{pod.Status.PodIP}
	}
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
			m.Ready = true
		}
	}
	return m
}

func (c *controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	if err := c.reconcile(ctx, key); err != nil {
		log.Printf("group %s: %v; retrying", key, err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *controller) reconcile(ctx context.Context, name string) error {
	obj, err := c.groups.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	g, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("unexpected object %T", obj)
	}
	spec := c.compile(g)
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	desired := groupStatus{Members: []member{}}
	for _, pod := range pods {
		if m := c.memberOf(spec, pod); m != nil {
			desired.Members = append(desired.Members, *m)
		}
	}
	sort.Slice(desired.Members, func(i, j int) bool {
		a, b := desired.Members[i], desired.Members[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	desired.MemberCount = len(desired.Members)

	var current groupStatus
	if raw, found, _ := unstructured.NestedMap(g.Object, "status"); found {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &current); err != nil {
			current = groupStatus{}
		}
	}
	if current.Members == nil {
		current.Members = []member{}
	}
	if reflect.DeepEqual(current, desired) {
		return nil
	}
	body, err := json.Marshal(map[string]any{"status": desired})
	if err != nil {
		return err
	}
	_, err = c.dynamic.Resource(groupsResource).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "airlock-bench-peer"}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func serveReady(addr string, ready *atomic.Bool) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "caches not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if err := http.ListenAndServe(addr, mux); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("ready endpoint: %v", err)
	}
}

// reportMemory answers SIGUSR1: collect garbage, give free pages back, print VmRSS.
func reportMemory() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGUSR1)
	for range signals {
		debug.FreeOSMemory()
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				fmt.Println(strings.Join(strings.Fields(line), " "))
			}
		}
	}
}
